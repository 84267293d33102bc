//! The connections the store keeps itself, beside its pool, for the statements it runs
//! most: group commit's statements (`group_commit`), and, while one of a few spare ones is
//! free, one-stream appends written alone and feed and stream reads (busier moments take
//! the pool, so a node's connections stay within `max_connections` + a few).
//!
//! sqlx's pool pings every connection it takes back (`return_to_pool` in sqlx-core 0.8: a
//! `Sync` round trip, in a task of its own), so each statement through it costs a second
//! round trip, and the next statement often finds that connection still in its ping and
//! takes another. These connections are pinged only when they sat idle long enough to have
//! been dropped by a restarted server ([`IDLE_PING_AFTER`]), and go back after a statement
//! that did not fail on I/O. One whose caller went away mid-statement is pinged in a task
//! of its own, as the pool does, which waits out the statement's answer, and then goes back
//! too: a cancelled read does not cost a new connection (a new server process) later.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::append::Failure;
use super::{connect_within, IDLE_PING_AFTER};
use crate::error::StoreError;

/// Spare connections: how many appends written alone and reads run off the pool at once.
/// One serves a lone reader (a projection, a command's load) between its statements.
const SPARE_CONNECTIONS: usize = 2;
/// How long a connection whose caller went away may take to finish its statement before it
/// is closed instead of put back.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections, each with the time it went idle.
type Idle = Mutex<Vec<(PgConnection, Instant)>>;

/// Idle connections and how to open more.
pub(super) struct Connections {
    /// One permit per spare connection in use (or being drained after its caller went away).
    spare: Arc<Semaphore>,
    idle: Arc<Idle>,
    options: PgConnectOptions,
    /// How long opening a connection may take (a server that does not answer at all).
    connect_timeout: Duration,
}

/// The errors of what runs on these connections: whether one may have broken its
/// connection, and how failing to get a connection is told.
pub(super) trait ConnectionError {
    /// No connection: it could not be opened. Nothing was sent.
    fn no_connection(e: sqlx::Error) -> Self;
    /// Whether the connection may be unusable after this (an I/O or protocol error; a
    /// server's refusal of a statement leaves it as good as it was).
    fn broke_connection(&self) -> bool;
}

impl ConnectionError for StoreError {
    fn no_connection(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }

    fn broke_connection(&self) -> bool {
        matches!(self, StoreError::Database(e) if !matches!(e, sqlx::Error::Database(_)))
    }
}

impl ConnectionError for Failure {
    /// Worth trying again: nothing was written.
    fn no_connection(e: sqlx::Error) -> Self {
        Failure::Retry(e)
    }

    fn broke_connection(&self) -> bool {
        matches!(self, Failure::Store(e) if e.broke_connection())
    }
}

impl Connections {
    /// Connections made like `pool`'s.
    pub(super) fn new(pool: &PgPool, connect_timeout: Duration) -> Self {
        Connections {
            spare: Arc::new(Semaphore::new(SPARE_CONNECTIONS)),
            idle: Arc::new(Mutex::new(Vec::new())),
            options: pool.connect_options().as_ref().clone(),
            connect_timeout,
        }
    }

    /// Runs `statement` on a connection of its own: for group commit's writers, which
    /// `PgStoreOptions::group_commit_writers` bounds.
    pub(super) async fn run<T, E: ConnectionError>(&self, statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>) -> Result<T, E> {
        self.take(None).await?.run(statement).await
    }

    /// Runs `statement` on a spare connection if one is free now; `None` (nothing run) if not.
    pub(super) async fn on_spare<T, E: ConnectionError>(
        &self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        Some(match self.try_spare().await? {
            Ok(taken) => taken.run(statement).await,
            Err(e) => Err(e),
        })
    }

    /// A spare connection, if one is free now.
    async fn try_spare<E: ConnectionError>(&self) -> Option<Result<Taken<'_>, E>> {
        let permit = self.spare.clone().try_acquire_owned().ok()?;
        Some(self.take(Some(permit)).await)
    }

    /// Runs `read` on a spare connection when one is free, else on one of `pool`'s.
    pub(super) async fn read<T>(&self, pool: &PgPool, read: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.for_read(pool).await?;
        let done = read(&mut conn).await;
        conn.release(&done);
        done
    }

    /// A spare connection when one is free, else one of `pool`'s: where a read runs.
    async fn for_read(&self, pool: &PgPool) -> Result<ReadConnection<'_>, StoreError> {
        match self.try_spare().await {
            Some(taken) => taken.map(ReadConnection::Spare),
            None => Ok(ReadConnection::Pooled(pool.acquire().await?)),
        }
    }

    /// An idle connection (pinged first when it sat idle long enough to have been dropped
    /// by a restarted server), or a new one.
    async fn take<E: ConnectionError>(&self, spare: Option<OwnedSemaphorePermit>) -> Result<Taken<'_>, E> {
        let idle = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let conn = match idle {
            Some((mut conn, since)) if since.elapsed() >= IDLE_PING_AFTER => match conn.ping().await {
                Ok(()) => conn,
                Err(_) => self.connect().await?,
            },
            Some((conn, _)) => conn,
            None => self.connect().await?,
        };
        Ok(Taken {
            conn: Some(conn),
            idle: &self.idle,
            spare,
        })
    }

    async fn connect<E: ConnectionError>(&self) -> Result<PgConnection, E> {
        connect_within(&self.options, self.connect_timeout).await.map_err(E::no_connection)
    }
}

/// One of these connections in use. [`Taken::release`] puts it back; dropped instead (its
/// caller went away mid-statement), it is drained and put back by a task of its own.
struct Taken<'a> {
    /// `None` once released.
    conn: Option<PgConnection>,
    idle: &'a Arc<Idle>,
    spare: Option<OwnedSemaphorePermit>,
}

impl Taken<'_> {
    /// Runs `statement` on this connection, then releases it.
    async fn run<T, E: ConnectionError>(mut self, statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>) -> Result<T, E> {
        let done = statement(&mut self).await;
        self.release(&done);
        done
    }

    /// Back to the idle ones, unless what ran on it may have broken it.
    fn release<T, E: ConnectionError>(mut self, done: &Result<T, E>) {
        let conn = self.conn.take();
        if let Some(conn) = conn.filter(|_| !matches!(done, Err(e) if e.broke_connection())) {
            put_back(self.idle, conn);
        }
    }
}

impl Drop for Taken<'_> {
    /// Not released: the statement's answer may still be coming. A ping waits it out (sqlx
    /// reads up to the server's next "ready"), then the connection goes back; the spare
    /// permit stays with it meanwhile, so the spares stay within their number.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else { return };
        let (idle, spare) = (self.idle.clone(), self.spare.take());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(DRAIN_TIMEOUT, conn.ping()).await {
                    put_back(&idle, conn);
                }
                drop(spare);
            });
        }
    }
}

fn put_back(idle: &Idle, conn: PgConnection) {
    if let Ok(mut idle) = idle.lock() {
        idle.push((conn, Instant::now()));
    }
}

impl Deref for Taken<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a taken connection is only released by value")
    }
}

impl DerefMut for Taken<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a taken connection is only released by value")
    }
}

/// Where a read runs (`Connections::for_read`).
enum ReadConnection<'a> {
    Spare(Taken<'a>),
    /// Pinged by the pool when it is dropped, as every pooled connection is.
    Pooled(PoolConnection<Postgres>),
}

impl ReadConnection<'_> {
    fn release<T>(self, done: &Result<T, StoreError>) {
        if let ReadConnection::Spare(taken) = self {
            taken.release(done);
        }
    }
}

impl Deref for ReadConnection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            ReadConnection::Spare(taken) => taken,
            ReadConnection::Pooled(pooled) => pooled,
        }
    }
}

impl DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            ReadConnection::Spare(taken) => taken,
            ReadConnection::Pooled(pooled) => pooled,
        }
    }
}

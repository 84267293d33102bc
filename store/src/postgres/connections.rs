//! Connections the store keeps beside sqlx's pool for the statements of its hot paths:
//! appends (group commit) and stream pages (`load_stream`, what every command reads).
//!
//! sqlx 0.8's pool pings every connection it takes back (a second round trip per statement,
//! the `Sync` that `strace` showed beside every append's `Bind`). On a 2-core machine that
//! ping competes with the next statement: the benchmark's baseline query through sqlx took
//! 0.149 ms for 10 events and 1.158 ms for 1,000 through the pool, 0.137 and 0.994 on a
//! connection of its own. These connections are pinged only after [`IDLE_PING_AFTER`] idle
//! (what catches one a restarted server dropped), and the most recently used is used next.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Semaphore;

use super::append::Failure;
use super::IDLE_PING_AFTER;
use crate::error::StoreError;

/// The errors of statements run here: what opening a connection that failed becomes, and
/// which errors may have left their connection unusable (an I/O or protocol error, not one
/// the server reported), so that it is closed instead of used again.
pub(super) trait ConnectionError {
    /// Opening a connection failed: nothing ran.
    fn not_connected(e: sqlx::Error) -> Self;
    fn broke_connection(&self) -> bool;
}

impl ConnectionError for StoreError {
    fn not_connected(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }

    fn broke_connection(&self) -> bool {
        matches!(self, StoreError::Database(e) if !matches!(e, sqlx::Error::Database(_)))
    }
}

/// An append that could not connect wrote nothing: worth trying again.
impl ConnectionError for Failure {
    fn not_connected(e: sqlx::Error) -> Self {
        Failure::Retry(e)
    }

    fn broke_connection(&self) -> bool {
        matches!(self, Failure::Store(e) if e.broke_connection())
    }
}

pub(super) struct Connections {
    /// What [`run_limited`](Self::run_limited) may use at once: the pool's size.
    limit: Semaphore,
    /// How long `run_limited` waits for one of them: the pool's acquire timeout.
    acquire_timeout: Duration,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    options: PgConnectOptions,
    /// How long opening a connection may take (a server that does not answer at all).
    connect_timeout: Duration,
}

impl Connections {
    /// Connections made like `pool`'s, at most as many at once (through `run_limited`) as
    /// it has.
    pub(super) fn new(pool: &PgPool, connect_timeout: Duration) -> Self {
        Connections {
            limit: Semaphore::new((pool.options().get_max_connections() as usize).max(1)),
            acquire_timeout: pool.options().get_acquire_timeout(),
            idle: Mutex::new(Vec::new()),
            options: pool.connect_options().as_ref().clone(),
            connect_timeout,
        }
    }

    /// [`run`](Self::run), at most the pool's size of them at once; waits for a turn as long
    /// as the pool would (then `PoolTimedOut`, as from the pool).
    pub(super) async fn run_limited<T, E>(&self, statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: ConnectionError,
    {
        let _permit = match tokio::time::timeout(self.acquire_timeout, self.limit.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(E::not_connected(sqlx::Error::PoolClosed)),
            Err(_) => return Err(E::not_connected(sqlx::Error::PoolTimedOut)),
        };
        self.run(statement).await
    }

    /// Runs `statement` on an idle connection (pinged first when it sat idle long enough to
    /// have been dropped by a restarted server) or a new one; the caller bounds how many run
    /// at once. The connection is kept only when `statement` finished without breaking it;
    /// a caller that goes away mid-statement drops it.
    pub(super) async fn run<T, E>(&self, statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: ConnectionError,
    {
        let idle = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let mut conn = match idle {
            Some((mut conn, since)) if since.elapsed() >= IDLE_PING_AFTER => match conn.ping().await {
                Ok(()) => conn,
                Err(_) => self.connect().await.map_err(E::not_connected)?,
            },
            Some((conn, _)) => conn,
            None => self.connect().await.map_err(E::not_connected)?,
        };
        let done = statement(&mut conn).await;
        if !matches!(&done, Err(e) if e.broke_connection()) {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push((conn, Instant::now()));
            }
        }
        done
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        match tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(&self.options)).await {
            Ok(connected) => connected,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }
}

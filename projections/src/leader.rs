//! Who runs a worker: on Postgres, the process holding the worker's session advisory lock,
//! taken on a dedicated connection (application_name `cs-lock:<worker>:<name>`) and kept
//! alive by a heartbeat. When that connection dies the server releases the lock at once, a
//! standby (retrying every `leader_retry`) takes it and claims a new fencing token, and the
//! old leader's next checkpoint write matches no row (see `checkpoint`). The heartbeat only
//! shortens how long a deposed leader keeps working in vain; correctness comes from fencing.
//!
//! SQLite is one process by design (one writer): the lease is local and always granted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use store::Database;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ProjectionError;

/// How often the leader checks that its lock connection is alive.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A heartbeat that takes longer than this counts as a lost connection.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

const TRY_LOCK: &str = "select pg_try_advisory_lock(hashtextextended('cartsource:' || $1, 0))";

/// The right to run one worker, for as long as it is not lost.
pub(crate) enum Lease {
    Local,
    Postgres { lost: Arc<AtomicBool>, heartbeat: JoinHandle<()> },
}

impl Lease {
    pub fn is_lost(&self) -> bool {
        match self {
            Lease::Local => false,
            Lease::Postgres { lost, .. } => lost.load(Ordering::Acquire),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The heartbeat task owns the lock connection: ending it closes the connection,
        // which releases the lock.
        if let Lease::Postgres { heartbeat, .. } = self {
            heartbeat.abort();
        }
    }
}

/// The lock connection's application_name (at most 63 bytes, as Postgres keeps).
pub fn lock_application_name(worker: &str, name: &str) -> String {
    let mut app = format!("cs-lock:{worker}:{name}");
    while app.len() > 63 {
        app.pop();
    }
    app
}

/// One try: the lease, or `None` when another process holds it.
async fn try_lock(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(TRY_LOCK).bind(name).fetch_one(conn).await
}

/// Waits until this process leads `name` (or `shutdown` is set: `None`).
pub(crate) async fn acquire(db: &Database, name: &str, worker: &str, retry: Duration, shutdown: &mut watch::Receiver<bool>) -> Option<Lease> {
    let Database::Postgres(store) = db else { return Some(Lease::Local) };
    let options = store
        .pool()
        .connect_options()
        .as_ref()
        .clone()
        .application_name(&lock_application_name(worker, name));
    let mut candidate: Option<PgConnection> = None;
    loop {
        if *shutdown.borrow() {
            return None;
        }
        if candidate.is_none() {
            match PgConnection::connect_with(&options).await {
                Ok(conn) => candidate = Some(conn),
                Err(e) => tracing::warn!(worker = name, error = %e, "cannot open the leader lock connection; retrying"),
            }
        }
        if let Some(conn) = candidate.as_mut() {
            match try_lock(conn, name).await {
                Ok(true) => {
                    let conn = candidate.take()?;
                    tracing::info!(worker = name, "leading");
                    return Some(start_heartbeat(conn, name));
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "leader lock attempt failed; reconnecting");
                    candidate = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Tries once (tooling that runs workers inline and must not wait for another leader).
pub(crate) async fn try_acquire(db: &Database, name: &str, worker: &str) -> Result<Option<Lease>, ProjectionError> {
    let Database::Postgres(store) = db else { return Ok(Some(Lease::Local)) };
    let options = store
        .pool()
        .connect_options()
        .as_ref()
        .clone()
        .application_name(&lock_application_name(worker, name));
    let mut conn = PgConnection::connect_with(&options).await?;
    if try_lock(&mut conn, name).await? {
        Ok(Some(start_heartbeat(conn, name)))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

fn start_heartbeat(mut conn: PgConnection, name: &str) -> Lease {
    let lost = Arc::new(AtomicBool::new(false));
    let flag = lost.clone();
    let name = name.to_owned();
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let alive = tokio::time::timeout(HEARTBEAT_TIMEOUT, sqlx::query("select 1").execute(&mut conn)).await;
            if !matches!(alive, Ok(Ok(_))) {
                tracing::warn!(worker = %name, "leader lock connection lost; standing down");
                flag.store(true, Ordering::Release);
                return;
            }
        }
    });
    Lease::Postgres { lost, heartbeat }
}

//! Who runs a worker. On Postgres: the process holding the consumer's lease, kept in its
//! checkpoint row (`leader`, `leader_epoch`, `lease_expires_at`; migration `0003_leases.sql`).
//!
//! One keeper task per process ([`Leases`]), on one connection of its own, renews every lease
//! the process holds in one statement per heartbeat and takes the expired or free leases of
//! the workers waiting here. Taking a lease bumps `leader_epoch`, the fencing token every
//! checkpoint write names (`checkpoint`), in the same statement. A leader that stops renewing
//! (killed, frozen, cut off) loses its lease when it expires by the database's clock, and a
//! standby takes it within a heartbeat after that. A frozen leader that wakes up finds its
//! lease lost by its own clock (from when it sent its last successful renewal, so before the
//! database lets anyone else take it), and if it still writes, its write names a token that
//! moved on, matches no row and rolls back: correctness comes from the token alone.
//!
//! A leader frozen inside a transaction holds that transaction's row locks (and the feed
//! horizon of every reader) until the server ends it: the server does so after the lease
//! duration when the store's connections are opened with `idle_in_transaction_timeout` (the
//! `cartsource` binary does), and the take skips locked rows meanwhile.
//!
//! Advisory locks, used before, were held for as long as their connection lived, and the
//! connection of a frozen process lives on: its standby never took over (#16). They also
//! cost a connection per consumer; the keeper costs one per process.
//!
//! SQLite is one process by design (one writer): the lease is local and always granted;
//! taking it only bumps the token.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use store::Database;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::checkpoint;
use crate::error::ProjectionError;

/// How long a lease lasts without renewal, and how often it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// A leader that has not renewed for this long may be replaced. It bounds how long a
    /// frozen leader stalls its consumers: a standby leads at most one heartbeat later.
    pub duration: Duration,
    /// How often the holder renews, and a standby tries to take an expired lease.
    pub heartbeat: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            duration: Duration::from_secs(3),
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// Renews the leases this process holds; returns the names still held.
const RENEW: &str = "update projection_checkpoints c set lease_expires_at = now() + make_interval(secs => $4)
      from unnest($2::text[], $3::bigint[]) as h(name, epoch)
     where c.name = h.name and c.leader = $1 and c.leader_epoch = h.epoch
 returning c.name";

/// Takes the expired or free leases among `$2` with a new fencing token each. `skip locked`:
/// a frozen leader may hold a row in an open transaction until the server ends it.
const TAKE: &str = "update projection_checkpoints c
       set leader = $1, leader_epoch = c.leader_epoch + 1, lease_expires_at = now() + make_interval(secs => $3),
           state = case when c.state in ('FAILED', 'REBUILDING') then c.state else 'CATCHING_UP' end, updated_at = now()
     where c.name in (select name from projection_checkpoints
                       where name = any($2) and (lease_expires_at is null or lease_expires_at < now())
                         for update skip locked)
 returning c.name, c.leader_epoch";

/// Ends a lease at once (shutdown), so a standby need not wait for it to expire.
const RELEASE: &str = "update projection_checkpoints set lease_expires_at = null where name = $1 and leader_epoch = $2";

/// A lease this process holds: its token, and until when it counts as held here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hold {
    epoch: i64,
    valid_until: Instant,
}

impl Hold {
    fn valid(&self) -> bool {
        Instant::now() < self.valid_until
    }
}

type Held = HashMap<&'static str, Hold>;

/// The right to run one worker under fencing token `epoch`, for as long as it is not lost.
pub(crate) struct Lease {
    pub name: &'static str,
    pub epoch: i64,
    /// The keeper's view (Postgres); `None`: local, never lost.
    held: Option<watch::Receiver<Held>>,
}

impl Lease {
    pub fn is_lost(&self) -> bool {
        let Some(held) = &self.held else { return false };
        let lost = held.borrow().get(self.name).is_none_or(|hold| hold.epoch != self.epoch || !hold.valid());
        lost
    }
}

/// The leases of one process: what it holds, what its workers wait for, and the keeper.
pub(crate) struct Leases {
    db: Database,
    holder: String,
    timings: LeaseTimings,
    held: watch::Sender<Held>,
    wanted: Mutex<HashSet<&'static str>>,
    /// Wakes the keeper at once (a worker started waiting).
    kick: Notify,
    /// Set at shutdown: the keeper renews what is held but takes nothing more.
    closing: watch::Sender<bool>,
    keeper: Mutex<Option<(PgPool, JoinHandle<()>)>>,
}

impl Leases {
    pub fn new(db: Database, holder: String, timings: LeaseTimings) -> Arc<Leases> {
        Arc::new(Leases {
            db,
            holder,
            timings,
            held: watch::channel(Held::new()).0,
            wanted: Mutex::new(HashSet::new()),
            kick: Notify::new(),
            closing: watch::channel(false).0,
            keeper: Mutex::new(None),
        })
    }

    /// Waits until this process leads `name` (`None` once `shutdown` is set).
    pub async fn acquire(self: &Arc<Self>, name: &'static str, shutdown: &mut watch::Receiver<bool>) -> Option<Lease> {
        if !matches!(self.db, Database::Postgres(_)) {
            return self.local(name, shutdown).await;
        }
        self.pool()?;
        self.wanted.lock().ok()?.insert(name);
        self.kick.notify_one();
        let mut held = self.held.subscribe();
        let epoch = tokio::select! {
            hold = held.wait_for(|h| h.get(name).is_some_and(Hold::valid)) => hold.ok()?.get(name)?.epoch,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        tracing::info!(worker = name, epoch, "leading");
        Some(Lease {
            name,
            epoch,
            held: Some(held),
        })
    }

    /// One try, for tooling that runs workers inline and must not wait for another leader:
    /// `None` when another process holds the lease.
    pub async fn try_acquire(self: &Arc<Self>, name: &'static str) -> Result<Option<Lease>, ProjectionError> {
        let Some(pool) = self.pool() else {
            let epoch = checkpoint::claim(&self.db, name, &self.holder).await?;
            return Ok(Some(Lease { name, epoch, held: None }));
        };
        self.take(&pool, &[name]).await?;
        let held = self.held.subscribe();
        let epoch = held.borrow().get(name).filter(|hold| hold.valid()).map(|hold| hold.epoch);
        Ok(epoch.map(|epoch| Lease {
            name,
            epoch,
            held: Some(held),
        }))
    }

    /// Gives a lease back: a standby can take it at once. Harmless when it was lost already.
    pub async fn release(&self, lease: Lease) {
        self.forget(&lease);
        if let Ok(mut wanted) = self.wanted.lock() {
            wanted.remove(lease.name);
        }
        let pool = self.keeper.lock().ok().and_then(|keeper| keeper.as_ref().map(|(pool, _)| pool.clone()));
        let Some(pool) = pool else { return };
        if let Err(e) = sqlx::query(RELEASE).bind(lease.name).bind(lease.epoch).execute(&pool).await {
            tracing::warn!(worker = lease.name, error = %e, "could not release the lease; it expires by itself");
        }
    }

    /// Drops a lease this process no longer works under (deposed or lost); the worker waits
    /// for a new one.
    pub fn forget(&self, lease: &Lease) {
        self.held.send_if_modified(|held| {
            let mine = held.get(lease.name).is_some_and(|hold| hold.epoch == lease.epoch);
            if mine {
                held.remove(lease.name);
            }
            mine
        });
    }

    /// Stops taking leases (shutdown); what is held is still renewed until released.
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Stops the keeper: what is still held expires by itself.
    pub fn stop(&self) {
        if let Ok(mut keeper) = self.keeper.lock() {
            if let Some((_, task)) = keeper.take() {
                task.abort();
            }
        }
    }

    /// SQLite: the lease is local; taking it bumps the token (retried while the database is
    /// busy).
    async fn local(&self, name: &'static str, shutdown: &mut watch::Receiver<bool>) -> Option<Lease> {
        let mut backoff = crate::runner::Backoff::default();
        loop {
            match checkpoint::claim(&self.db, name, &self.holder).await {
                Ok(epoch) => return Some(Lease { name, epoch, held: None }),
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "cannot claim the checkpoint; retrying");
                    if !backoff.wait(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The keeper's pool (one connection), starting the keeper on first use; `None` on SQLite.
    fn pool(self: &Arc<Self>) -> Option<PgPool> {
        let Database::Postgres(store) = &self.db else { return None };
        let mut keeper = self.keeper.lock().ok()?;
        if let Some((pool, _)) = keeper.as_ref() {
            return Some(pool.clone());
        }
        // A statement that waits longer than a heartbeat (a locked row) is given up and
        // tried again at the next one.
        let timeout = format!("{}ms", self.timings.heartbeat.as_millis().max(1));
        let options = store
            .pool()
            .connect_options()
            .as_ref()
            .clone()
            .application_name(&lease_application_name(&self.holder))
            .options([("statement_timeout", timeout)]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.timings.heartbeat)
            .connect_lazy_with(options);
        let task = tokio::spawn(self.clone().keep(pool.clone()));
        *keeper = Some((pool.clone(), task));
        Some(pool)
    }

    /// Every heartbeat (or when kicked): renew what is held, then take what is wanted.
    async fn keep(self: Arc<Self>, pool: PgPool) {
        let mut tick = tokio::time::interval(self.timings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.kick.notified() => {}
            }
            self.renew(&pool).await;
            if *self.closing.borrow() {
                continue;
            }
            let wanted: Vec<&'static str> = match self.wanted.lock() {
                Ok(wanted) => {
                    let held = self.held.borrow();
                    wanted.iter().copied().filter(|name| !held.contains_key(name)).collect()
                }
                Err(_) => continue,
            };
            if !wanted.is_empty() {
                if let Err(e) = self.take(&pool, &wanted).await {
                    tracing::warn!(error = %e, "cannot take leases; trying again at the next heartbeat");
                }
            }
        }
    }

    async fn renew(&self, pool: &PgPool) {
        let (names, epochs): (Vec<&str>, Vec<i64>) = {
            let held = self.held.borrow();
            held.iter()
                .filter(|(_, hold)| hold.valid())
                .map(|(name, hold)| (*name, hold.epoch))
                .unzip()
        };
        let sent = Instant::now();
        let renewed = if names.is_empty() {
            Ok(Vec::new())
        } else {
            sqlx::query_scalar::<_, String>(RENEW)
                .bind(&self.holder)
                .bind(&names)
                .bind(&epochs)
                .bind(self.timings.duration.as_secs_f64())
                .fetch_all(pool)
                .await
        };
        if let Err(e) = &renewed {
            tracing::warn!(error = %e, "cannot renew the leases; they are lost if this lasts");
        }
        self.held.send_if_modified(|held| {
            let before = held.clone();
            held.retain(|name, hold| {
                let keep = match &renewed {
                    Ok(renewed) if names.contains(name) => renewed.iter().any(|r| r == name),
                    _ => hold.valid(),
                };
                if !keep {
                    // The worker says so when it stops (it may notice first, by its clock).
                    tracing::debug!(worker = *name, epoch = hold.epoch, "lease not renewed");
                }
                keep
            });
            if let Ok(renewed) = &renewed {
                for name in renewed {
                    if let Some(hold) = held.get_mut(name.as_str()) {
                        hold.valid_until = sent + self.timings.duration;
                    }
                }
            }
            *held != before
        });
    }

    async fn take(&self, pool: &PgPool, names: &[&'static str]) -> Result<(), sqlx::Error> {
        let sent = Instant::now();
        let taken: Vec<(String, i64)> = sqlx::query_as(TAKE)
            .bind(&self.holder)
            .bind(names)
            .bind(self.timings.duration.as_secs_f64())
            .fetch_all(pool)
            .await?;
        if taken.is_empty() {
            return Ok(());
        }
        self.held.send_modify(|held| {
            for (name, epoch) in taken {
                if let Some(name) = names.iter().find(|n| **n == name) {
                    held.insert(
                        name,
                        Hold {
                            epoch,
                            valid_until: sent + self.timings.duration,
                        },
                    );
                }
            }
        });
        Ok(())
    }
}

/// The keeper connection's application_name (at most 63 bytes, as Postgres keeps).
pub fn lease_application_name(worker: &str) -> String {
    let mut app = format!("cs-lease:{worker}");
    while app.len() > 63 {
        app.pop();
    }
    app
}

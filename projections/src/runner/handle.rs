//! [`Projections`], the handle: starts the workers, answers statuses and read-your-writes,
//! takes rebuild and resume requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{Database, EventStore, LiveFeed, Position};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::checkpoint::{self, Checkpoint};
use crate::db::position;
use crate::error::ProjectionError;
use crate::leader::Leases;
use crate::model::read_models::ReadModels;
use crate::model::Model;
use crate::progress::{self, Progress, WorkerCounters};
use crate::reactors::Reactor;

/// What the tasks share with the handle.
pub(super) struct Shared {
    pub(super) db: Database,
    pub(super) store: Arc<dyn EventStore>,
    pub(super) config: ProjectionsConfig,
    /// The process's shared live feed, which caught-up workers follow (`follow`); without
    /// it (inline handles) workers only read pages.
    pub(super) live: Option<LiveFeed>,
    /// The local workers' covered positions (rings at once for local `wait_for`s) and
    /// counters.
    pub(super) progress: Progress,
    /// Bumped by local requests (rebuild, resume): wakes idle workers at once.
    pub(super) nudge: watch::Sender<u64>,
    pub(super) shutdown: watch::Sender<bool>,
    /// What the models remember between batches.
    pub(super) memory: crate::model::Memory,
    /// The leases this process holds or waits for, and their keeper.
    pub(super) leases: Arc<Leases>,
}

impl Shared {
    pub(super) fn bump(sender: &watch::Sender<u64>) {
        sender.send_modify(|n| *n = n.wrapping_add(1));
    }
}

pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) read: ReadModels,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        self.shared.leases.stop();
    }
}

/// The read side: the workers (when started), their statuses, and read-your-writes.
#[derive(Clone)]
pub struct Projections {
    pub(super) inner: Arc<Inner>,
}

impl Projections {
    /// A handle that runs nothing yet: [`Projections::run_until_caught_up`] runs its
    /// workers inline (tests, tooling).
    pub fn new(db: Database, config: ProjectionsConfig) -> Projections {
        Projections::with_live(db, config, None)
    }

    pub(super) fn with_live(db: Database, config: ProjectionsConfig, live: Option<LiveFeed>) -> Projections {
        let store = db.store();
        let read = ReadModels::with_replica(db.clone(), config.read_replica.clone());
        let leases = Leases::new(db.clone(), config.worker_name.clone(), config.lease);
        let shared = Arc::new(Shared {
            db: db.clone(),
            store,
            config,
            live,
            progress: Progress::new(),
            nudge: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            memory: Default::default(),
            leases,
        });
        Projections {
            inner: Arc::new(Inner {
                shared,
                read,
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts every projection and reactor (and the publisher when `nats_url` is set) as
    /// background tasks (role worker/all). On Postgres each runs here only while this process
    /// holds its lease (`leader`); the others stand by. `live` is the process's one shared live
    /// feed (the API's subscriptions use the same): caught-up workers take their events from
    /// it in memory.
    pub async fn start(db: Database, config: ProjectionsConfig, live: LiveFeed) -> Result<Projections, ProjectionError> {
        let projections = Projections::with_live(db, config, Some(live));
        let shared = projections.inner.shared.clone();
        let kinds = shared.config.workers();
        let mut names: Vec<String> = kinds.iter().map(|k| k.name().to_owned()).collect();
        // The retention job's row only carries its lease.
        names.extend(shared.config.retention.is_some().then(|| crate::retention::RETENTION.to_owned()));
        checkpoint::ensure(&shared.db, &names).await?;
        let mut tasks = projections
            .inner
            .tasks
            .lock()
            .map_err(|_| ProjectionError::Corrupt("worker list poisoned".into()))?;
        for kind in kinds {
            let worker = Worker::new(shared.clone(), kind);
            tasks.push(tokio::spawn(worker.run()));
        }
        if let Some(retention) = shared.config.retention.clone() {
            let job = crate::Retention::new(shared.db.clone(), retention);
            tasks.push(tokio::spawn(job.run(shared.leases.clone(), shared.shutdown.subscribe())));
        }
        drop(tasks);
        Ok(projections)
    }

    /// The same handle without workers (role api): statuses, waits, requests.
    pub fn observer(db: Database) -> Projections {
        Projections::observer_reading_from(db, None)
    }

    /// [`Projections::observer`] whose read models are read from `replica` when given.
    pub fn observer_reading_from(db: Database, replica: Option<sqlx::PgPool>) -> Projections {
        Projections::new(
            db,
            ProjectionsConfig {
                run_reactors: false,
                read_replica: replica,
                ..ProjectionsConfig::default()
            },
        )
    }

    pub fn read(&self) -> &ReadModels {
        &self.inner.read
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Every consumer's status, by name.
    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let shared = self.shared();
        let head = shared.store.head_position().await?;
        let mut statuses = Vec::new();
        // The retention job's row only carries its lease: it follows no feed.
        for cp in checkpoint::read_all(&shared.db)
            .await?
            .into_iter()
            .filter(|cp| cp.name != crate::retention::RETENTION)
        {
            statuses.push(self.status_of(cp, head).await?);
        }
        Ok(statuses)
    }

    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        let shared = self.shared();
        let head = shared.store.head_position().await?;
        self.status_of(checkpoint::read(&shared.db, name).await?, head).await
    }

    /// The row as operators see it. `position` is how far the consumer has applied its feed:
    /// the head when nothing of its feed lies between its checkpoint and the head (see
    /// `progress`), else the checkpoint (or what the local worker covered).
    pub(super) async fn status_of(&self, cp: Checkpoint, head: Position) -> Result<ProjectionStatus, ProjectionError> {
        let applied = self.applied(&cp, head, true).await?;
        Ok(ProjectionStatus {
            position: applied,
            head_position: head.max(applied),
            state: ProjectionState::parse(&cp.state),
            last_error: cp.last_error,
            error_position: cp.error_position.map(position),
            updated_at: cp.updated_at,
            rebuild_progress: cp.rebuild_generation.and(cp.rebuild_position).map(position),
            leader: cp.leader,
            name: cp.name,
        })
    }

    /// How far the consumer whose row is `cp` has applied its feed, up to `head`; `local`
    /// trusts what this process's own worker covered (true of the primary, not of a replica
    /// that may lag behind it).
    async fn applied(&self, cp: &Checkpoint, head: Position, local: bool) -> Result<Position, ProjectionError> {
        let shared = self.shared();
        let mut applied = cp.position();
        if !cp.failed() {
            if local {
                applied = applied.max(shared.progress.covered_here(&cp.name).unwrap_or_default());
            }
            if applied < head {
                if let Some(categories) = progress::categories_of(&cp.name) {
                    if progress::reached(shared.store.as_ref(), cp, categories.as_deref(), head).await? {
                        applied = head;
                    }
                }
            }
        }
        Ok(applied)
    }

    /// The read replica as readiness reports it, when reads go to one: whether it is a
    /// standby replaying the primary's log, and how far each consumer's read model on it
    /// has got (from the checkpoint rows as replicated).
    pub async fn replica_status(&self) -> Option<Result<ReplicaStatus, ProjectionError>> {
        let replica = self.inner.read.replica()?.clone();
        Some(self.replica_status_of(&replica).await)
    }

    async fn replica_status_of(&self, replica: &sqlx::PgPool) -> Result<ReplicaStatus, ProjectionError> {
        // `case`: pg_is_wal_replay_paused() raises an error outside recovery.
        let (in_recovery, replay_paused): (bool, bool) =
            sqlx::query_as("select pg_is_in_recovery(), case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end")
                .fetch_one(replica)
                .await?;
        let head = self.shared().store.head_position().await?;
        let mut positions = Vec::new();
        for cp in self.inner.read.checkpoints().await? {
            let applied = self.applied(&cp, head, false).await?;
            positions.push((cp.name, applied));
        }
        Ok(ReplicaStatus {
            in_recovery,
            replay_paused,
            positions,
        })
    }

    /// What this process's workers have cost the database, by worker name (see
    /// [`WorkerCounters`]).
    pub fn counters(&self) -> HashMap<String, WorkerCounters> {
        self.shared().progress.counters()
    }

    /// Resolves once projection `name` (e.g. "carts", "orders", "products",
    /// "notifications") has applied `position`; read-your-writes for the API's
    /// `minPosition`. Works for every consumer and any position, although a worker writes
    /// its checkpoint only for events it consumes: resolved when its checkpoint is at or past
    /// `position`, or when the store's head is and its filtered feed has no event between
    /// the checkpoint and `position` (`progress::reached`; reads only, so an API-only node
    /// can wait for a worker that runs elsewhere). In the process running the worker it
    /// resolves from memory when the worker has already applied the position or read past it
    /// (woken as it does); otherwise it polls those reads (2 to 50 ms). With a read replica
    /// the checkpoint is read there and memory is not trusted, so that the query that follows
    /// on the replica sees the position (the feed's half of `reached` still reads the
    /// primary: it only asks whether events lie between the replica's row and `position`).
    pub async fn wait_for(&self, name: &str, position: Position, timeout: Duration) -> Result<(), WaitError> {
        let shared = self.shared();
        let categories = progress::categories_of(name);
        let on_replica = self.inner.read.replica().is_some();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut bell = shared.progress.bell.subscribe();
        let mut pause = Duration::from_millis(2);
        let mut next_poll = tokio::time::Instant::now();
        loop {
            bell.borrow_and_update();
            // What the local worker covered is on the primary; a replica may not have it yet.
            if !on_replica && shared.progress.covered_here(name).is_some_and(|covered| covered >= position) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= next_poll {
                // The row where the reads go: on a replica, the read model as replicated is at
                // least there (it moves with the row, in one transaction).
                let cp = self.inner.read.checkpoint(name).await.map_err(WaitError::Store)?;
                if cp.position() >= position {
                    return Ok(());
                }
                if cp.failed() {
                    return Err(WaitError::Failed(cp.last_error.unwrap_or_default()));
                }
                if let Some(categories) = &categories {
                    if progress::reached(shared.store.as_ref(), &cp, categories.as_deref(), position)
                        .await
                        .map_err(WaitError::Store)?
                    {
                        return Ok(());
                    }
                }
                next_poll = tokio::time::Instant::now() + pause;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            if now >= deadline {
                return Err(WaitError::Timeout);
            }
            tokio::select! {
                _ = bell.changed() => {}
                _ = tokio::time::sleep_until(next_poll.min(deadline)) => {}
            }
        }
    }

    /// Starts a zero-downtime rebuild of a read model (the leader picks it up); a rebuild
    /// already under way goes on.
    pub async fn rebuild(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        if Model::from_name(name).is_none() {
            return Err(if Reactor::from_name(name).is_some() || name == PUBLISHER {
                ProjectionError::NotRebuildable(name.to_owned())
            } else {
                ProjectionError::UnknownProjection(name.to_owned())
            });
        }
        checkpoint::request_rebuild(&self.shared().db, name).await?;
        Shared::bump(&self.shared().nudge);
        self.status(name).await
    }

    /// Lets a FAILED consumer try again from its checkpoint (after the cause was fixed).
    pub async fn resume(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        checkpoint::resume(&self.shared().db, name).await?;
        Shared::bump(&self.shared().nudge);
        self.status(name).await
    }

    /// Runs every worker of this handle's configuration until all have applied everything
    /// (including what the reactors appended meanwhile), then returns. When this handle has
    /// started background workers, or another process leads a worker, it waits for them
    /// instead. A worker that is FAILED at the end is an error.
    pub async fn run_until_caught_up(&self) -> Result<(), ProjectionError> {
        let shared = self.inner.shared.clone();
        let kinds = shared.config.workers();
        checkpoint::ensure(&shared.db, &kinds.iter().map(|k| k.name().to_owned()).collect::<Vec<_>>()).await?;
        let started = self.inner.tasks.lock().map(|t| !t.is_empty()).unwrap_or(false);
        loop {
            let head = shared.store.head_position().await?;
            for kind in &kinds {
                let name = kind.name();
                let led_here = if started { None } else { shared.leases.try_acquire(name).await? };
                match led_here {
                    Some(lease) => Worker::new(shared.clone(), kind.clone()).drain(lease).await?,
                    None => match self.wait_for(name, head, Duration::from_secs(60)).await {
                        Ok(()) | Err(WaitError::Failed(_)) => {}
                        Err(WaitError::Timeout) => return Err(ProjectionError::NotCaughtUp(name.to_owned())),
                        Err(WaitError::Store(e)) => return Err(e),
                    },
                }
            }
            let failed: Vec<String> = checkpoint::read_all(&shared.db)
                .await?
                .into_iter()
                .filter(|cp| cp.failed() && kinds.iter().any(|k| k.name() == cp.name))
                .map(|cp| {
                    format!(
                        "{} at {}: {}",
                        cp.name,
                        cp.error_position.unwrap_or(cp.position),
                        cp.last_error.unwrap_or_default()
                    )
                })
                .collect();
            if !failed.is_empty() {
                return Err(ProjectionError::Failed(failed.join("; ")));
            }
            // Reactors may have appended events the others have not seen yet.
            if shared.store.head_position().await? == head {
                return Ok(());
            }
        }
    }

    /// Stops the workers at a checkpoint (they finish the batch in hand; its transaction
    /// commits or rolls back whole) and marks them STOPPED.
    pub async fn shutdown(&self) {
        let _ = self.shared().shutdown.send(true);
        self.shared().leases.close();
        let tasks: Vec<JoinHandle<()>> = match self.inner.tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            let _ = task.await;
        }
        // Every worker released its lease on the way out.
        self.shared().leases.stop();
    }
}

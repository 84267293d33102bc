//! The workers: one task per projection, reactor and publisher, each a named consumer of
//! the global feed with its checkpoint row.
//!
//! A worker's life: wait for the lease (`leader`), claim a fencing token (`checkpoint`),
//! then loop: read the next page of the feed (filtered by the worker's categories) after its
//! checkpoint, apply it and move the checkpoint to the page's last event, in one fenced
//! transaction. Once a page finds nothing left, a worker that is not rebuilding follows the
//! process's shared live feed (`follow`): woken only by events of its categories, it takes
//! them from memory, one transaction per batch of what is ready. Without a live feed
//! (inline handles), or while rebuilding, it sleeps until the store's doorbell rings, a
//! local request (rebuild, resume) nudges it, or the poll interval passes. A page without
//! events writes nothing (only a change of state is recorded), so a worker writes at most
//! one transaction per batch and none for commits it does not consume. How far a worker has
//! got for `wait_for` and the statuses is answered without those writes (`progress`).
//!
//! Errors: transient ones (connection, pool, serialisation, busy) are retried with jittered
//! exponential backoff from the checkpoint; an event that fails otherwise is isolated (the
//! batch is re-applied one event at a time) and the worker goes FAILED with the error and
//! the position of that event. It stays FAILED, the others run on, until an operator calls
//! [`Projections::resume`]. Losing the lease or the fencing token sends the worker back to
//! standby.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{Database, EventStore, LiveFeed, Position};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint::{self, Checkpoint};
use crate::db::position;
use crate::error::ProjectionError;
use crate::leader::{self, Lease};
use crate::model::Model;
use crate::progress::{self, Progress, WorkerCounters};
use crate::publisher::{BusConfig, Publisher};
use crate::reactors::Reactor;
use crate::model::read_models::ReadModels;

mod follow;
mod steps;

use steps::FeedPage;

/// The checkpoint name of the NATS publisher.
pub const PUBLISHER: &str = "nats-publisher";
/// Old generations stay this long after a swap, for reads that began before it.
const CLEANUP_DELAY: Duration = Duration::from_secs(10);
/// Longest pause between retries after transient errors.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct ProjectionsConfig {
    /// Run the fulfilment and inventory reactors (role worker/all).
    pub run_reactors: bool,
    /// Publish every event to NATS JetStream at this URL.
    pub nats_url: Option<String>,
    /// JetStream stream and subject prefix (tests use their own).
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    /// Names this process in leader locks and in the status.
    pub worker_name: String,
    /// Events per live batch.
    pub batch_size: usize,
    /// Events per rebuild batch (rebuilds favour throughput).
    pub rebuild_batch_size: usize,
    /// Events per reactor or publisher batch (each event is a command or a publish).
    pub reactor_batch_size: usize,
    /// A worker reading pages polls this often even without a doorbell (a lost
    /// notification only delays); a worker following the live feed checks its lease this
    /// often and re-reads its checkpoint row every `follow::RECHECK_TICKS` of these, to see
    /// requests made by other processes.
    pub poll_interval: Duration,
    /// A standby tries to take the lead this often.
    pub leader_retry: Duration,
}

impl Default for ProjectionsConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cartsource".to_owned());
        ProjectionsConfig {
            run_reactors: true,
            nats_url: None,
            nats_stream: "CARTSOURCE".to_owned(),
            nats_subject_prefix: "cartsource".to_owned(),
            worker_name: format!("{host}-{}", std::process::id()),
            batch_size: 500,
            rebuild_batch_size: 5_000,
            reactor_batch_size: 100,
            poll_interval: store::live::POLL_INTERVAL,
            leader_retry: Duration::from_secs(1),
        }
    }
}

impl ProjectionsConfig {
    fn bus(&self) -> Option<BusConfig> {
        self.nats_url.as_ref().map(|url| BusConfig {
            url: url.clone(),
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
            ..BusConfig::new(url.clone())
        })
    }

    /// The workers this configuration runs.
    fn workers(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = Model::ALL.into_iter().map(Kind::Model).collect();
        if self.run_reactors {
            kinds.extend(Reactor::ALL.into_iter().map(Kind::Reactor));
        }
        if let Some(bus) = self.bus() {
            kinds.push(Kind::Publisher(Arc::new(bus)));
        }
        kinds
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionState {
    Running,
    CatchingUp,
    Rebuilding,
    Stopped,
    Failed,
}

impl ProjectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionState::Running => "RUNNING",
            ProjectionState::CatchingUp => "CATCHING_UP",
            ProjectionState::Rebuilding => "REBUILDING",
            ProjectionState::Stopped => "STOPPED",
            ProjectionState::Failed => "FAILED",
        }
    }

    fn parse(text: &str) -> ProjectionState {
        match text {
            "RUNNING" => ProjectionState::Running,
            "CATCHING_UP" => ProjectionState::CatchingUp,
            "REBUILDING" => ProjectionState::Rebuilding,
            "FAILED" => ProjectionState::Failed,
            _ => ProjectionState::Stopped,
        }
    }
}

impl std::fmt::Display for ProjectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    /// Last global position applied.
    pub position: Position,
    /// Last global position a reader can see now.
    pub head_position: Position,
    pub state: ProjectionState,
    pub last_error: Option<String>,
    /// The position of the event that made it FAILED.
    pub error_position: Option<Position>,
    pub updated_at: OffsetDateTime,
    /// While REBUILDING: how far the new copy has got.
    pub rebuild_progress: Option<Position>,
    /// The worker that leads (or last led) it.
    pub leader: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the projection did not reach the position in time")]
    Timeout,
    #[error("the projection has failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Store(ProjectionError),
}

/// What a worker does.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Model(Model),
    Reactor(Reactor),
    Publisher(Arc<BusConfig>),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Model(m) => m.name(),
            Kind::Reactor(r) => r.name(),
            Kind::Publisher(_) => PUBLISHER,
        }
    }

    fn categories(&self) -> Option<Vec<String>> {
        let cats = match self {
            Kind::Model(m) => m.categories(),
            Kind::Reactor(r) => r.categories(),
            Kind::Publisher(_) => return None,
        };
        Some(cats.iter().map(|c| (*c).to_owned()).collect())
    }
}

/// What the tasks share with the handle.
struct Shared {
    db: Database,
    store: Arc<dyn EventStore>,
    config: ProjectionsConfig,
    /// The process's shared live feed, which caught-up workers follow (`follow`); without
    /// it (inline handles) workers only read pages.
    live: Option<LiveFeed>,
    /// The local workers' covered positions (rings at once for local `wait_for`s) and
    /// counters.
    progress: Progress,
    /// Bumped by local requests (rebuild, resume): wakes idle workers at once.
    nudge: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    /// What the models remember between batches.
    memory: crate::model::Memory,
}

impl Shared {
    fn bump(sender: &watch::Sender<u64>) {
        sender.send_modify(|n| *n = n.wrapping_add(1));
    }
}

struct Inner {
    shared: Arc<Shared>,
    read: ReadModels,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
        if let Ok(tasks) = self.tasks.get_mut() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

/// The read side: the workers (when started), their statuses, and read-your-writes.
#[derive(Clone)]
pub struct Projections {
    inner: Arc<Inner>,
}

impl Projections {
    /// A handle that runs nothing yet: [`Projections::run_until_caught_up`] runs its
    /// workers inline (tests, tooling).
    pub fn new(db: Database, config: ProjectionsConfig) -> Projections {
        Projections::with_live(db, config, None)
    }

    fn with_live(db: Database, config: ProjectionsConfig, live: Option<LiveFeed>) -> Projections {
        let store = db.store();
        let shared = Arc::new(Shared {
            db: db.clone(),
            store,
            config,
            live,
            progress: Progress::new(),
            nudge: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            memory: Default::default(),
        });
        Projections {
            inner: Arc::new(Inner {
                shared,
                read: ReadModels::new(db),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts every projection and reactor (and the publisher when `nats_url` is set) as
    /// background tasks (role worker/all). On Postgres each runs here only while this process
    /// holds its leader lock; the others stand by. `live` is the process's one shared live
    /// feed (the API's subscriptions use the same): caught-up workers take their events from
    /// it in memory.
    pub async fn start(db: Database, config: ProjectionsConfig, live: LiveFeed) -> Result<Projections, ProjectionError> {
        let projections = Projections::with_live(db, config, Some(live));
        let shared = projections.inner.shared.clone();
        let kinds = shared.config.workers();
        checkpoint::ensure(&shared.db, &kinds.iter().map(|k| k.name().to_owned()).collect::<Vec<_>>()).await?;
        let mut tasks = projections
            .inner
            .tasks
            .lock()
            .map_err(|_| ProjectionError::Corrupt("worker list poisoned".into()))?;
        for kind in kinds {
            let worker = Worker::new(shared.clone(), kind);
            tasks.push(tokio::spawn(worker.run()));
        }
        drop(tasks);
        Ok(projections)
    }

    /// The same handle without workers (role api): statuses, waits, requests.
    pub fn observer(db: Database) -> Projections {
        Projections::new(
            db,
            ProjectionsConfig {
                run_reactors: false,
                ..ProjectionsConfig::default()
            },
        )
    }

    pub fn read(&self) -> &ReadModels {
        &self.inner.read
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Every consumer's status, by name.
    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let shared = self.shared();
        let head = shared.store.head_position().await?;
        let mut statuses = Vec::new();
        for cp in checkpoint::read_all(&shared.db).await? {
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
    async fn status_of(&self, cp: Checkpoint, head: Position) -> Result<ProjectionStatus, ProjectionError> {
        let shared = self.shared();
        let mut applied = cp.position();
        if !cp.failed() {
            applied = applied.max(shared.progress.covered_here(&cp.name).unwrap_or_default());
            if applied < head {
                if let Some(categories) = progress::categories_of(&cp.name) {
                    if progress::reached(shared.store.as_ref(), &cp, categories.as_deref(), head).await? {
                        applied = head;
                    }
                }
            }
        }
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
    /// (woken as it does); otherwise it polls those reads (2 to 50 ms).
    pub async fn wait_for(&self, name: &str, position: Position, timeout: Duration) -> Result<(), WaitError> {
        let shared = self.shared();
        let categories = progress::categories_of(name);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut bell = shared.progress.bell.subscribe();
        let mut pause = Duration::from_millis(2);
        let mut next_poll = tokio::time::Instant::now();
        loop {
            bell.borrow_and_update();
            if shared.progress.covered_here(name).is_some_and(|covered| covered >= position) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= next_poll {
                let cp = checkpoint::read(&shared.db, name).await.map_err(WaitError::Store)?;
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
                let led_here = if started {
                    None
                } else {
                    leader::try_acquire(&shared.db, name, &shared.config.worker_name).await?
                };
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
        let tasks: Vec<JoinHandle<()>> = match self.inner.tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Applied something; there may be more.
    Advanced,
    /// Nothing to do until new events arrive.
    Idle,
    /// FAILED: nothing to do until resumed.
    Failed,
}

/// The fencing token and bookkeeping of one term as leader.
struct Term {
    epoch: i64,
    /// When to delete stale generations (after a swap, and once per term).
    cleanup_at: Option<Instant>,
}

struct Worker {
    shared: Arc<Shared>,
    kind: Kind,
    name: &'static str,
    categories: Option<Vec<String>>,
    doorbell: watch::Receiver<u64>,
    nudge: watch::Receiver<u64>,
    publisher: Option<Publisher>,
    /// The checkpoint as this leader last read or wrote it, and when it was read: re-read
    /// every poll interval and after a nudge, so requests from other processes are seen;
    /// a stale copy can only make a fenced write miss, never land wrongly.
    cached: Option<(Checkpoint, Instant)>,
    /// A rebuild's next page, read ahead, and the position it was read after.
    prefetched: Option<(Position, FeedPage)>,
}

impl Worker {
    fn new(shared: Arc<Shared>, kind: Kind) -> Worker {
        let doorbell = shared.store.doorbell();
        let nudge = shared.nudge.subscribe();
        Worker {
            name: kind.name(),
            categories: kind.categories(),
            kind,
            doorbell,
            nudge,
            publisher: None,
            shared,
            cached: None,
            prefetched: None,
        }
    }

    /// The background loop: stand by, lead, stand by again when deposed, until shutdown.
    async fn run(mut self) {
        let mut shutdown = self.shared.shutdown.subscribe();
        let worker_name = self.shared.config.worker_name.clone();
        while !*shutdown.borrow() {
            let Some(lease) = leader::acquire(&self.shared.db, self.name, &worker_name, self.shared.config.leader_retry, &mut shutdown).await else {
                break;
            };
            let mut backoff = Backoff::default();
            let mut term = loop {
                self.count(0, 1);
                match checkpoint::claim(&self.shared.db, self.name, &worker_name).await {
                    Ok(epoch) => {
                        break Some(Term {
                            epoch,
                            cleanup_at: Some(Instant::now() + CLEANUP_DELAY),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(worker = self.name, error = %e, "cannot claim the checkpoint; retrying");
                        if !backoff.wait(&mut shutdown).await || lease.is_lost() {
                            break None;
                        }
                    }
                }
            };
            let Some(term) = term.as_mut() else { continue };
            self.lead(term, &lease, &mut shutdown).await;
            if *shutdown.borrow() {
                self.count(0, 1);
                if let Err(e) = checkpoint::set_state(&self.shared.db, self.name, term.epoch, ProjectionState::Stopped.as_str()).await {
                    tracing::warn!(worker = self.name, error = %e, "could not record the stop");
                }
            }
        }
    }

    /// Works while the lease and the token hold.
    async fn lead(&mut self, term: &mut Term, lease: &Lease, shutdown: &mut watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if lease.is_lost() {
                return;
            }
            match self.step(term).await {
                Ok(Step::Advanced) => {
                    backoff.reset();
                    self.shared.progress.ring();
                }
                Ok(Step::Idle) => {
                    backoff.reset();
                    let live = self.shared.live.clone();
                    match (live, self.followable(term)) {
                        (Some(live), Some(cp)) => match self.follow(&live, cp, term, lease, shutdown).await {
                            Ok(Step::Failed) => {
                                self.shared.progress.ring();
                                self.idle(shutdown, false).await;
                            }
                            Ok(_) => {}
                            Err(ProjectionError::Deposed(_)) => {
                                tracing::info!(worker = self.name, "another process leads now; standing by");
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(worker = self.name, error = %e, "following the live feed failed; retrying");
                                self.cached = None;
                                if !backoff.wait(shutdown).await {
                                    return;
                                }
                            }
                        },
                        _ => self.idle(shutdown, true).await,
                    }
                }
                Ok(Step::Failed) => {
                    self.shared.progress.ring();
                    self.idle(shutdown, false).await;
                }
                Err(ProjectionError::Deposed(_)) => {
                    tracing::info!(worker = self.name, "another process leads now; standing by");
                    return;
                }
                Err(e) => {
                    // Deterministic failures were recorded by the step; what reaches here is
                    // transient, or the checkpoint itself could not be read or written.
                    tracing::warn!(worker = self.name, error = %e, transient = e.is_transient(), "step failed; retrying");
                    if !backoff.wait(shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Runs steps until idle or failed (inline mode), retrying transient errors a while.
    async fn drain(mut self, lease: Lease) -> Result<(), ProjectionError> {
        self.count(0, 1);
        let mut term = Term {
            epoch: checkpoint::claim(&self.shared.db, self.name, &self.shared.config.worker_name).await?,
            cleanup_at: None,
        };
        let mut attempts = 0;
        loop {
            if lease.is_lost() {
                return Err(ProjectionError::Deposed(self.name.to_owned()));
            }
            match self.step(&mut term).await {
                Ok(Step::Advanced) => self.shared.progress.ring(),
                Ok(Step::Idle) | Ok(Step::Failed) => break,
                Err(e) if e.is_transient() && attempts < 20 => {
                    attempts += 1;
                    tracing::warn!(worker = self.name, error = %e, "transient error; retrying");
                    tokio::time::sleep(Duration::from_millis(10 << attempts.min(6))).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.count(0, 1);
        checkpoint::set_state(&self.shared.db, self.name, term.epoch, ProjectionState::Stopped.as_str()).await?;
        drop(lease);
        Ok(())
    }

    async fn idle(&mut self, shutdown: &mut watch::Receiver<bool>, follow_doorbell: bool) {
        let poll = self.shared.config.poll_interval;
        let doorbell = async {
            if !follow_doorbell || self.doorbell.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let nudged = tokio::select! {
            _ = doorbell => false,
            _ = self.nudge.changed() => true,
            _ = tokio::time::sleep(poll) => false,
            _ = shutdown.changed() => false,
        };
        if nudged {
            self.cached = None;
        }
    }

    async fn step(&mut self, term: &mut Term) -> Result<Step, ProjectionError> {
        let fresh = self.cached.take().filter(|(_, at)| at.elapsed() < self.shared.config.poll_interval);
        let (cp, read_at) = match fresh {
            Some(cached) => cached,
            None => {
                self.count(1, 0);
                (checkpoint::read(&self.shared.db, self.name).await?, Instant::now())
            }
        };
        let step = self.step_from(&cp, term).await;
        match (&step, self.cached.take()) {
            // The row as this leader left it, as old as the read it started from.
            (Ok(Step::Advanced | Step::Idle), Some((next, _))) => self.cached = Some((next, read_at)),
            // Whatever happened, read the row again next time.
            _ => self.cached = None,
        }
        step
    }

    /// Remembers the checkpoint a successful live step left (see `cached`).
    fn remember(&mut self, cp: &Checkpoint, to: Position, state: ProjectionState) {
        let next = Checkpoint {
            position: crate::db::pos(to),
            state: state.as_str().to_owned(),
            ..cp.clone()
        };
        self.cached = Some((next, Instant::now()));
    }

    /// Counts this worker's reads and committed transactions (see [`WorkerCounters`]).
    fn count(&self, reads: u64, writes: u64) {
        self.shared.progress.count(self.name, reads, writes);
    }

    async fn step_from(&mut self, cp: &Checkpoint, term: &mut Term) -> Result<Step, ProjectionError> {
        let cp = cp.clone();
        if cp.leader_epoch != term.epoch {
            return Err(ProjectionError::Deposed(self.name.to_owned()));
        }
        if cp.failed() {
            return Ok(Step::Failed);
        }
        match self.kind.clone() {
            Kind::Model(model) => self.model_step(model, &cp, term).await,
            Kind::Reactor(_) | Kind::Publisher(_) => self.effect_step(&cp, term).await,
        }
    }
}

/// Jittered exponential backoff (backon's schedule): 50 ms doubling to [`MAX_BACKOFF`].
struct Backoff {
    delays: backon::ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        use backon::BackoffBuilder;
        let delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(MAX_BACKOFF)
            .with_jitter()
            .without_max_times()
            .build();
        Backoff { delays }
    }
}

impl Backoff {
    fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// False when shutdown was requested during the pause.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let pause = self.delays.next().unwrap_or(MAX_BACKOFF);
        tokio::select! {
            _ = tokio::time::sleep(pause) => !*shutdown.borrow(),
            _ = shutdown.changed() => false,
        }
    }
}

/// Statuses by name, for callers that want a map.
pub fn by_name(statuses: Vec<ProjectionStatus>) -> HashMap<String, ProjectionStatus> {
    statuses.into_iter().map(|s| (s.name.clone(), s)).collect()
}

//! One worker's loop: stand by, lead, step through the feed, back off on transient errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::Position;
use tokio::sync::watch;

use super::*;
use crate::checkpoint::{self, Checkpoint};
use crate::error::ProjectionError;
use crate::leader::Lease;
use crate::model::Model;
use crate::publisher::{BusConfig, Publisher};
use crate::reactors::Reactor;

/// What a worker does.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Model(Model),
    Reactor(Reactor),
    Publisher(Arc<BusConfig>),
}

impl Kind {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Kind::Model(m) => m.name(),
            Kind::Reactor(r) => r.name(),
            Kind::Publisher(_) => PUBLISHER,
        }
    }

    pub(super) fn categories(&self) -> Option<Vec<String>> {
        let cats = match self {
            Kind::Model(m) => m.categories(),
            Kind::Reactor(r) => r.categories(),
            Kind::Publisher(_) => return None,
        };
        Some(cats.iter().map(|c| (*c).to_owned()).collect())
    }
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Applied something; there may be more.
    Advanced,
    /// Nothing to do until new events arrive.
    Idle,
    /// FAILED: nothing to do until resumed.
    Failed,
}

/// The fencing token and bookkeeping of one term as leader.
pub(super) struct Term {
    pub(super) epoch: i64,
    /// When to delete stale generations (after a swap, and once per term).
    pub(super) cleanup_at: Option<Instant>,
}

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) kind: Kind,
    pub(super) name: &'static str,
    pub(super) categories: Option<Vec<String>>,
    pub(super) doorbell: watch::Receiver<u64>,
    pub(super) nudge: watch::Receiver<u64>,
    pub(super) publisher: Option<Publisher>,
    /// The checkpoint as this leader last read or wrote it, and when it was read: re-read
    /// every poll interval and after a nudge, so requests from other processes are seen;
    /// a stale copy can only make a fenced write miss, never land wrongly.
    pub(super) cached: Option<(Checkpoint, Instant)>,
    /// A rebuild's next page, read ahead, and the position it was read after.
    pub(super) prefetched: Option<(Position, FeedPage)>,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, kind: Kind) -> Worker {
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
    pub(super) async fn run(mut self) {
        let mut shutdown = self.shared.shutdown.subscribe();
        let leases = self.shared.leases.clone();
        while !*shutdown.borrow() {
            let Some(lease) = leases.acquire(self.name, &mut shutdown).await else {
                break;
            };
            // What was read under an earlier token is of no use under this one.
            self.cached = None;
            self.prefetched = None;
            let mut term = Term {
                epoch: lease.epoch,
                cleanup_at: Some(Instant::now() + CLEANUP_DELAY),
            };
            self.lead(&mut term, &lease, &mut shutdown).await;
            if *shutdown.borrow() {
                self.count(0, 1);
                if let Err(e) = checkpoint::set_state(&self.shared.db, self.name, term.epoch, ProjectionState::Stopped.as_str()).await {
                    tracing::warn!(worker = self.name, error = %e, "could not record the stop");
                }
                leases.release(lease).await;
            } else {
                leases.forget(&lease);
            }
        }
    }

    /// Works while the lease and the token hold.
    pub(super) async fn lead(&mut self, term: &mut Term, lease: &Lease, shutdown: &mut watch::Receiver<bool>) {
        let mut backoff = Backoff::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if lease.is_lost() {
                // Said here, where the worker stops, whichever noticed first: the keeper (a
                // renewal that failed or found the lease taken) or this worker's own clock.
                tracing::warn!(worker = self.name, epoch = lease.epoch, "lease lost; standing by");
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
    pub(super) async fn drain(mut self, lease: Lease) -> Result<(), ProjectionError> {
        let mut term = Term {
            epoch: lease.epoch,
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
        let stopped = checkpoint::set_state(&self.shared.db, self.name, term.epoch, ProjectionState::Stopped.as_str()).await;
        self.shared.leases.release(lease).await;
        stopped
    }

    pub(super) async fn idle(&mut self, shutdown: &mut watch::Receiver<bool>, follow_doorbell: bool) {
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

    pub(super) async fn step(&mut self, term: &mut Term) -> Result<Step, ProjectionError> {
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
    pub(super) fn remember(&mut self, cp: &Checkpoint, to: Position, state: ProjectionState) {
        let next = Checkpoint {
            position: crate::db::pos(to),
            state: state.as_str().to_owned(),
            ..cp.clone()
        };
        self.cached = Some((next, Instant::now()));
    }

    /// Counts this worker's reads and committed transactions (see [`WorkerCounters`]).
    pub(super) fn count(&self, reads: u64, writes: u64) {
        self.shared.progress.count(self.name, reads, writes);
    }

    pub(super) async fn step_from(&mut self, cp: &Checkpoint, term: &mut Term) -> Result<Step, ProjectionError> {
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
pub(crate) struct Backoff {
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
    pub(super) fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// False when shutdown was requested during the pause.
    pub(crate) async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let pause = self.delays.next().unwrap_or(MAX_BACKOFF);
        tokio::select! {
            _ = tokio::time::sleep(pause) => !*shutdown.borrow(),
            _ = shutdown.changed() => false,
        }
    }
}

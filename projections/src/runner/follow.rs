//! A caught-up worker follows the process's shared live feed instead of reading pages.
//!
//! Once a page step finds nothing left to read, a worker that is not rebuilding subscribes
//! to `LiveFeed::all(checkpoint, its categories)`: it is woken only by events of its own
//! categories and takes them from memory. It awaits the first event, drains whatever else
//! is ready (up to its batch size), and applies that batch and moves its checkpoint in ONE
//! transaction ([`Worker::consume`]). It drops the subscription and goes back to page steps,
//! which resume from the checkpoint, when the feed ends or errs (a too-slow subscriber is
//! dropped by the feed), when a local request (rebuild, resume) nudges it, when its lease is
//! lost, when a batch fails, and when a periodic re-read of its checkpoint row (every
//! [`RECHECK_TICKS`] poll intervals: the only database access of an idle worker) shows a
//! change made elsewhere: another leader's token, a rebuild or a failure. Fencing is
//! unchanged: every write still names the token, generation and position it started from.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use store::{LiveFeed, RecordedEvent, StoreError};
use tokio::sync::watch;

use super::{ProjectionState, Step, Term, Worker};
use crate::checkpoint::{self, Checkpoint};
use crate::error::ProjectionError;
use crate::leader::Lease;

/// Poll intervals between re-reads of the checkpoint row while following.
pub(super) const RECHECK_TICKS: u32 = 4;

impl Worker {
    /// The row to follow from: the one the last page step left, when it may follow.
    pub(super) fn followable(&self, term: &Term) -> Option<Checkpoint> {
        let (cp, _) = self.cached.as_ref()?;
        let live = cp.leader_epoch == term.epoch && !cp.failed() && cp.rebuild_generation.is_none();
        live.then(|| cp.clone())
    }

    /// Follows the live feed from `cp` until page steps must take over again (see the
    /// module). `Ok(Step::Advanced)`: go back to page steps at once.
    pub(super) async fn follow(
        &mut self,
        live: &LiveFeed,
        mut cp: Checkpoint,
        term: &mut Term,
        lease: &Lease,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Step, ProjectionError> {
        let batch = match self.kind {
            super::Kind::Model(_) => self.shared.config.batch_size,
            _ => self.shared.config.reactor_batch_size,
        }
        .max(1);
        let mut feed = live.all(cp.position(), self.categories.clone());
        let mut tick = tokio::time::interval(self.shared.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(Step::Advanced),
                _ = self.nudge.changed() => {
                    self.cached = None;
                    return Ok(Step::Advanced);
                }
                _ = tick.tick() => {
                    if lease.is_lost() {
                        return Ok(Step::Advanced);
                    }
                    // The cleanup of old generations is due: page steps run it (there is
                    // nothing to clean before the first swap).
                    if term.cleanup_at.is_some_and(|at| std::time::Instant::now() >= at) {
                        if cp.generation > 1 {
                            return Ok(Step::Advanced);
                        }
                        term.cleanup_at = None;
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(RECHECK_TICKS) {
                        self.count(1, 0);
                        let row = checkpoint::read(&self.shared.db, self.name).await?;
                        if row.leader_epoch != term.epoch {
                            return Err(ProjectionError::Deposed(self.name.to_owned()));
                        }
                        if row.failed() || row.rebuild_generation.is_some() || row.generation != cp.generation || row.position != cp.position {
                            self.cached = None;
                            return Ok(Step::Advanced);
                        }
                    }
                }
                item = feed.next() => {
                    let first = match item {
                        Some(Ok(event)) => event,
                        Some(Err(e)) => return self.feed_ended(e),
                        None => return Err(ProjectionError::Store(StoreError::LiveFeedFailed("the live feed stopped".into()))),
                    };
                    let (events, pending) = drain_ready(&mut feed, first, batch);
                    let step = self.consume(&cp, term.epoch, &events, ProjectionState::Running).await?;
                    if step == Step::Failed {
                        return Ok(step);
                    }
                    self.shared.progress.ring();
                    match self.cached.as_ref() {
                        Some((next, _)) => cp = next.clone(),
                        None => return Ok(Step::Advanced),
                    }
                    if let Some(e) = pending {
                        return self.feed_ended(e);
                    }
                }
            }
        }
    }

    /// The feed ended with `error`: a subscriber that fell behind catches up by pages at
    /// once; anything else is retried with backoff.
    fn feed_ended(&mut self, error: StoreError) -> Result<Step, ProjectionError> {
        match error {
            StoreError::SubscriberTooSlow { .. } => {
                tracing::info!(worker = self.name, "fell behind the live feed; catching up from the store");
                Ok(Step::Advanced)
            }
            other => Err(ProjectionError::Store(other)),
        }
    }
}

/// `first` and whatever else the feed has ready, up to `batch` events; an error that was
/// ready comes back apart, after the events before it.
/// The feed's events are shared with every other consumer; a batch takes its own copies.
fn drain_ready(
    feed: &mut futures::stream::BoxStream<'static, Result<Arc<RecordedEvent>, StoreError>>,
    first: Arc<RecordedEvent>,
    batch: usize,
) -> (Vec<RecordedEvent>, Option<StoreError>) {
    let mut events = vec![Arc::unwrap_or_clone(first)];
    while events.len() < batch {
        match feed.next().now_or_never() {
            Some(Some(Ok(event))) => events.push(Arc::unwrap_or_clone(event)),
            Some(Some(Err(e))) => return (events, Some(e)),
            Some(None) | None => break,
        }
    }
    (events, None)
}

//! One step of a worker on a page of its feed, and the batches it applies: a read model's
//! (live or rebuilding), a reactor's and the publisher's. Every write is fenced (token,
//! generation, position) and moves the checkpoint at most once per batch.

use std::time::Instant;

use store::{EventStore, Position, RecordedEvent};
use tracing::Instrument;

use super::{Kind, ProjectionState, Step, Term, Worker, CLEANUP_DELAY};
use crate::checkpoint::{self, Checkpoint};
use crate::db::{position, Tx};
use crate::error::ProjectionError;
use crate::model::Model;
use crate::publisher::Publisher;
use crate::reactors::Reactor;

impl Worker {
    /// The next page after `after` (see [`read_page`]), noting the doorbell first so that a
    /// commit during the read rings again.
    async fn read_feed(&mut self, after: Position, limit: usize) -> Result<FeedPage, ProjectionError> {
        self.doorbell.borrow_and_update();
        self.count(2, 0);
        read_page(self.shared.store.as_ref(), self.categories.as_deref(), after, limit).await
    }

    /// Records the state a caught-up (or no longer caught-up) worker is in, when it changed:
    /// the only write of a step without events.
    async fn record_state(&mut self, cp: &Checkpoint, epoch: i64, state: ProjectionState) -> Result<(), ProjectionError> {
        if cp.state != state.as_str() {
            self.count(0, 1);
            checkpoint::set_state(&self.shared.db, self.name, epoch, state.as_str()).await?;
        }
        Ok(())
    }

    pub(super) async fn model_step(&mut self, model: Model, cp: &Checkpoint, term: &mut Term) -> Result<Step, ProjectionError> {
        let mut step = Step::Idle;
        let from = cp.position();
        let page = self.read_feed(from, self.shared.config.batch_size).await?;
        let state = if cp.rebuild_generation.is_some() {
            ProjectionState::Rebuilding
        } else if page.caught_up {
            ProjectionState::Running
        } else {
            ProjectionState::CatchingUp
        };
        if page.events.is_empty() {
            self.record_state(cp, term.epoch, state).await?;
            if cp.rebuild_generation.is_none() {
                self.remember(cp, from, state);
            }
        } else {
            if self.consume(cp, term.epoch, &page.events, state).await? == Step::Failed {
                return Ok(Step::Failed);
            }
            step = Step::Advanced;
        }
        self.shared.progress.covered(self.name, page.covered);
        if let Some(generation) = cp.rebuild_generation {
            match self.rebuild_step(model, cp, generation, term).await? {
                Step::Idle => {}
                other => step = other,
            }
        }
        // Rows of other generations exist only once a rebuild has run (the first generation
        // is 1, and an unfinished rebuild's rows are kept): a worker that never swapped skips
        // the write.
        let others_may_exist = cp.generation > 1 || cp.rebuild_generation.is_some();
        if term.cleanup_at.is_some_and(|at| Instant::now() >= at) {
            term.cleanup_at = None;
            if others_may_exist {
                self.count(0, 1);
                let mut tx = Tx::begin(&self.shared.db).await?;
                let deleted = model
                    .delete_other_generations(&mut tx.conn(), cp.generation, cp.rebuild_generation)
                    .await?;
                tx.commit().await?;
                if deleted > 0 {
                    tracing::info!(worker = self.name, deleted, "deleted rows of old generations");
                }
            }
        }
        Ok(step)
    }

    /// Applies events to the serving generation and moves the checkpoint to `to`, in one
    /// transaction.
    async fn apply_batch(&self, target: &Target, from: Position, events: &[RecordedEvent], to: Position) -> Result<(), ProjectionError> {
        let prepared = target.model.prepare(self.shared.store.as_ref(), events).await?;
        self.count(0, 1);
        let mut tx = Tx::begin(&self.shared.db).await?;
        target
            .model
            .write(&mut tx.conn(), target.generation, &prepared, &self.shared.memory)
            .await?;
        checkpoint::advance(
            &mut tx.conn(),
            self.name,
            target.epoch,
            target.generation,
            from,
            to,
            target.state.as_str(),
        )
        .await?;
        tx.commit().await?;
        self.shared.progress.covered(self.name, to);
        Ok(())
    }

    /// Applies a non-empty batch up to its last event `to`: one transaction, or, when that
    /// fails, one per event to find the one that cannot be applied. `Some(Step::Failed)` when
    /// an event cannot be applied (recorded). Its span continues the events' trace (see
    /// `commands::trace::follow`); a rebuild's batches replay history and get none.
    async fn apply_live(&self, target: &Target, from: Position, events: &[RecordedEvent], to: Position) -> Result<Option<Step>, ProjectionError> {
        let span = tracing::info_span!("project", worker = self.name, events = events.len(), from = %from, to = %to);
        commands::trace::follow(&span, events.iter().filter_map(|e| e.metadata.trace.as_ref()));
        self.apply_live_in_span(target, from, events, to).instrument(span).await
    }

    async fn apply_live_in_span(
        &self,
        target: &Target,
        from: Position,
        events: &[RecordedEvent],
        to: Position,
    ) -> Result<Option<Step>, ProjectionError> {
        let error = match self.apply_batch(target, from, events, to).await {
            Ok(()) => return Ok(None),
            Err(e) if e.is_transient() || matches!(e, ProjectionError::Deposed(_)) => return Err(e),
            Err(e) => e,
        };
        if events.len() <= 1 {
            let at = events.first().map_or(to, |e| e.position);
            return self.fail(target.epoch, &error, at).await.map(Some);
        }
        // Find the event that fails: one at a time, each with its own checkpoint.
        tracing::warn!(worker = self.name, error = %error, "a batch failed; applying its events one by one");
        let mut done = from;
        for event in events {
            match self.apply_batch(target, done, std::slice::from_ref(event), event.position).await {
                Ok(()) => done = event.position,
                Err(e) if e.is_transient() || matches!(e, ProjectionError::Deposed(_)) => return Err(e),
                Err(e) => return self.fail(target.epoch, &e, event.position).await.map(Some),
            }
        }
        Ok(None)
    }

    async fn fail(&self, epoch: i64, error: &ProjectionError, at: Position) -> Result<Step, ProjectionError> {
        tracing::error!(worker = self.name, position = %at, error = %error, "event cannot be applied; stopping this worker until resumed");
        self.count(0, 1);
        checkpoint::fail(&self.shared.db, self.name, epoch, &error.to_string(), Some(at)).await?;
        Ok(Step::Failed)
    }

    /// One batch of a rebuild into `generation`; swaps it in once it has caught up. While
    /// the batch is written, the next page is read (a rebuild is a long run of full pages,
    /// and the two keep both database cores busy); a page below the horizon never changes,
    /// so it stays right for as long as it waits.
    async fn rebuild_step(&mut self, model: Model, cp: &Checkpoint, generation: i64, term: &mut Term) -> Result<Step, ProjectionError> {
        let from = position(cp.rebuild_position.unwrap_or(0));
        let limit = self.shared.config.rebuild_batch_size;
        let page = match self.prefetched.take() {
            Some((after, page)) if after == from => page,
            _ => self.read_feed(from, limit).await?,
        };
        // A rebuild's position moves to the head when it has caught up: the swap needs it at
        // or past the live checkpoint, and it writes once per batch anyway.
        let to = page.covered;
        let next = async {
            if page.caught_up {
                return None;
            }
            self.count(2, 0);
            // A failed read ahead is only read again by the next step.
            read_page(self.shared.store.as_ref(), self.categories.as_deref(), to, limit).await.ok()
        };
        let target = Target {
            model,
            generation,
            epoch: term.epoch,
            state: ProjectionState::Rebuilding,
        };
        let (swapped, next) = tokio::join!(self.rebuild_batch(&target, cp.generation, from, &page), next);
        self.prefetched = next.map(|page| (to, page));
        let Some(swapped) = swapped? else {
            return Ok(Step::Failed);
        };
        if swapped {
            self.shared.progress.covered(self.name, to);
            tracing::info!(worker = self.name, generation, position = %to, "rebuild caught up and swapped in");
            term.cleanup_at = Some(Instant::now() + CLEANUP_DELAY);
        }
        Ok(if to > from || swapped { Step::Advanced } else { Step::Idle })
    }

    /// Writes one rebuild page into the target generation with the rebuild's progress,
    /// swapping it in for `serving` when the page is the last: `Some(swapped)`, or `None`
    /// when an event of the page cannot be applied (recorded: the worker is FAILED).
    async fn rebuild_batch(&self, target: &Target, serving: i64, from: Position, page: &FeedPage) -> Result<Option<bool>, ProjectionError> {
        let (events, to, caught_up) = (page.events.as_slice(), page.covered, page.caught_up);
        let (model, generation, epoch) = (target.model, target.generation, target.epoch);
        let at = events.first().map_or(to, |e| e.position);
        let prepared = match model.prepare(self.shared.store.as_ref(), events).await {
            Ok(prepared) => prepared,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => return self.fail(epoch, &e, at).await.map(|_| None),
        };
        self.count(0, 1);
        let mut tx = Tx::begin(&self.shared.db).await?;
        if from == Position::START {
            // Leftovers of an earlier, abandoned attempt at this generation.
            model.delete_other_generations(&mut tx.conn(), serving, None).await?;
        }
        if let Err(e) = model.write(&mut tx.conn(), generation, &prepared, &self.shared.memory).await {
            drop(tx);
            if e.is_transient() {
                return Err(e);
            }
            return self.fail(epoch, &e, at).await.map(|_| None);
        }
        checkpoint::advance_rebuild(&mut tx.conn(), self.name, epoch, generation, from, to).await?;
        let swapped = caught_up && checkpoint::swap(&mut tx.conn(), self.name, epoch, generation).await?;
        tx.commit().await?;
        Ok(Some(swapped))
    }

    /// A reactor's or the publisher's step: the next page, consumed (see [`Worker::consume`]).
    pub(super) async fn effect_step(&mut self, cp: &Checkpoint, term: &mut Term) -> Result<Step, ProjectionError> {
        let from = cp.position();
        let page = self.read_feed(from, self.shared.config.reactor_batch_size).await?;
        let state = if page.caught_up {
            ProjectionState::Running
        } else {
            ProjectionState::CatchingUp
        };
        if page.events.is_empty() {
            self.record_state(cp, term.epoch, state).await?;
            self.remember(cp, from, state);
            self.shared.progress.covered(self.name, page.covered);
            return Ok(Step::Idle);
        }
        let step = self.consume(cp, term.epoch, &page.events, state).await?;
        if step == Step::Advanced {
            self.shared.progress.covered(self.name, page.covered);
        }
        Ok(step)
    }

    /// Consumes a non-empty batch of the worker's live feed (a page, or what the live feed
    /// had ready) and moves the checkpoint to its last event: one transaction for a read
    /// model, the effects and then one checkpoint write for a reactor or the publisher.
    /// `Step::Failed` when an event cannot be applied (recorded).
    pub(super) async fn consume(
        &mut self,
        cp: &Checkpoint,
        epoch: i64,
        events: &[RecordedEvent],
        state: ProjectionState,
    ) -> Result<Step, ProjectionError> {
        let from = cp.position();
        let last = events.last().map_or(from, |e| e.position);
        let failed = match self.kind.clone() {
            Kind::Model(model) => {
                let target = Target {
                    model,
                    generation: cp.generation,
                    epoch,
                    state,
                };
                self.apply_live(&target, from, events, last).await?
            }
            Kind::Reactor(reactor) => self.act(cp, epoch, events, state, Effect::Reactor(reactor)).await?,
            Kind::Publisher(bus) => {
                if self.publisher.is_none() {
                    self.publisher = Some(Publisher::connect(&bus).await?);
                }
                self.act(cp, epoch, events, state, Effect::Publish).await?
            }
        };
        if let Some(failed) = failed {
            return Ok(failed);
        }
        if cp.rebuild_generation.is_none() {
            self.remember(cp, last, state);
        }
        Ok(Step::Advanced)
    }

    /// A reactor's or the publisher's batch: act on each event, then move the checkpoint.
    /// Acting twice on an event is harmless (idempotency keys; JetStream's dedupe), so the
    /// checkpoint is written once per batch.
    async fn act(
        &mut self,
        cp: &Checkpoint,
        epoch: i64,
        events: &[RecordedEvent],
        state: ProjectionState,
        effect: Effect,
    ) -> Result<Option<Step>, ProjectionError> {
        let from = cp.position();
        let mut done = from;
        for event in events {
            let result = match effect {
                Effect::Reactor(reactor) => {
                    // One span per event: a reaction belongs to the trace of the event it handles.
                    let span = tracing::info_span!("react", worker = self.name, position = %event.position, event_type = %event.event_type);
                    commands::trace::follow(&span, event.metadata.trace.as_ref());
                    reactor.react(&self.shared.store, event).instrument(span).await
                }
                Effect::Publish => match self.publisher.as_ref() {
                    Some(publisher) => publisher.publish(event).await,
                    None => Err(ProjectionError::Bus("not connected".into())),
                },
            };
            match result {
                Ok(()) => done = event.position,
                Err(e) => {
                    if matches!(effect, Effect::Publish) {
                        // Reconnect next time.
                        self.publisher = None;
                    }
                    if done > from {
                        self.advance_alone(cp, epoch, from, done, state).await?;
                    }
                    if e.is_transient() {
                        return Err(e);
                    }
                    return self.fail(epoch, &e, event.position).await.map(Some);
                }
            }
        }
        self.advance_alone(cp, epoch, from, done, state).await?;
        Ok(None)
    }

    async fn advance_alone(&self, cp: &Checkpoint, epoch: i64, from: Position, to: Position, state: ProjectionState) -> Result<(), ProjectionError> {
        self.count(0, 1);
        let mut tx = Tx::begin(&self.shared.db).await?;
        checkpoint::advance(&mut tx.conn(), self.name, epoch, cp.generation, from, to, state.as_str()).await?;
        tx.commit().await?;
        self.shared.progress.covered(self.name, to);
        Ok(())
    }
}

/// A page of the feed.
pub(super) struct FeedPage {
    events: Vec<RecordedEvent>,
    /// How far it covers the feed: to its last event, or (when the page is not full, so
    /// nothing readable is left) to the head position read before it.
    covered: Position,
    /// It reached the end of what is readable.
    caught_up: bool,
}

/// The page after `after`: the head first, then the events, so that a page that is not
/// full covers the feed up to that head (the store's feed never skips).
async fn read_page(store: &dyn EventStore, categories: Option<&[String]>, after: Position, limit: usize) -> Result<FeedPage, ProjectionError> {
    let head = store.head_position().await?;
    let events = store.read_all(after, limit, categories).await?;
    let caught_up = events.len() < limit;
    let last = events.last().map_or(after, |e| e.position).max(after);
    let covered = if caught_up { last.max(head) } else { last };
    Ok(FeedPage { events, covered, caught_up })
}

/// Where a live batch goes: the model, the generation it serves, the fencing token, and
/// the state to record with the checkpoint.
struct Target {
    model: Model,
    generation: i64,
    epoch: i64,
    state: ProjectionState,
}

#[derive(Clone, Copy)]
enum Effect {
    Reactor(Reactor),
    Publish,
}

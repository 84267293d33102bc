//! Per-stream mailboxes: within one process, the commands for one stream are queued and
//! decided in order against the current state, and the commands queued together are
//! appended together in ONE atomic append (group commit).
//!
//! A stream has a mailbox while it has work: the first command for an idle stream
//! spawns a task that drains the queue batch by batch and exits when it finds the queue
//! empty (both under the same lock, so no command is left behind). Each command keeps
//! its own outcome: a refused command gets its own error and contributes no events; a
//! command whose expected version is not the version at its turn gets
//! [`CommandError::Conflict`]; the others get their own version and the position of
//! their own last event.
//!
//! The state a batch starts from is the cached one when there is one: a successful
//! `Exact(version)` append proves it was current. Any refusal (domain error, expected
//! version mismatch, nothing to append) on a cached state is only answered after reading
//! the stream's tail, so no client is ever answered from a stale cache. A conflict means
//! another process wrote: read the tail, decide the whole group again, append again,
//! with jittered backoff, until each command's deadline ([`CommandError::Timeout`]).
//!
//! A command with an idempotency key is appended alone: the store's `AppendRequest`
//! records one key per append, and its stored outcome must be that command's own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, StoreError};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use crate::aggregate::{encode, fold_after, load, snapshot_if_due, Aggregate, Loaded};
use crate::cache::{StateCache, CACHE_CAPACITY};
use crate::context::{CommandContext, Executed};
use crate::error::CommandError;
use crate::idempotency::replayed;
use crate::retry::Backoff;

/// Save a snapshot once this many events were appended since the last one.
const SNAPSHOT_EVERY: u64 = 50;

pub(crate) type Decide<A> = Box<dyn Fn(&<A as Aggregate>::State) -> Result<Vec<<A as Aggregate>::Event>, CommandError> + Send>;
type Reply<S> = oneshot::Sender<Result<Executed<S>, CommandError>>;

/// One queued command.
pub(crate) struct Job<A: Aggregate> {
    pub ctx: CommandContext,
    pub expected: Option<u64>,
    pub decide: Decide<A>,
    pub deadline: Instant,
    pub reply: Reply<A::State>,
}

/// The mailboxes and the state cache of one aggregate type.
pub(crate) struct Lane<A: Aggregate> {
    store: Arc<dyn EventStore>,
    pub(crate) cache: StateCache<A::State>,
    queues: Mutex<HashMap<String, Vec<Job<A>>>>,
}

/// What one command came to in its turn.
enum Turn<S> {
    Refused(CommandError),
    Decided { events: Vec<NewEvent>, state: S, version: u64 },
}

impl<A: Aggregate> Lane<A> {
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Self {
        Lane {
            store,
            cache: StateCache::new(CACHE_CAPACITY),
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Job<A>>>> {
        self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a command; starts the stream's mailbox task if it is idle.
    pub(crate) fn submit(self: &Arc<Self>, stream_id: &str, job: Job<A>) {
        let mut queues = self.queues();
        if let Some(queue) = queues.get_mut(stream_id) {
            queue.push(job);
            return;
        }
        queues.insert(stream_id.to_owned(), vec![job]);
        drop(queues);
        let lane = self.clone();
        let stream_id = stream_id.to_owned();
        tokio::spawn(async move { lane.run(stream_id).await });
    }

    async fn run(self: Arc<Self>, stream_id: String) {
        // Should a batch panic, the queue goes with it (its callers see the mailbox stop)
        // and the next command starts a fresh task.
        let mut guard = Closing {
            lane: &self,
            stream_id: &stream_id,
            done: false,
        };
        loop {
            let batch = {
                let mut queues = self.queues();
                match queues.get_mut(&stream_id) {
                    Some(queue) if !queue.is_empty() => std::mem::take(queue),
                    _ => {
                        queues.remove(&stream_id);
                        guard.done = true;
                        return;
                    }
                }
            };
            for group in groups(batch) {
                // This task serves many callers: the commit continues their traces.
                let span = tracing::info_span!("mailbox.commit", stream_id = %stream_id, commands = group.len());
                crate::trace::follow(&span, group.iter().filter_map(|job| job.ctx.trace.as_ref()));
                self.commit(&stream_id, group).instrument(span).await;
            }
        }
    }

    /// Decides a group in order and appends it in one call, retrying after conflicts.
    async fn commit(&self, stream_id: &str, mut jobs: Vec<Job<A>>) {
        let store = self.store.as_ref();
        let (mut base, mut verified) = match self.cache.get(stream_id) {
            Some(cached) => (cached, false),
            None => match load::<A>(store, stream_id).await {
                Ok(loaded) => (loaded, true),
                Err(e) => return fail_all(jobs, e.into()),
            },
        };
        let mut backoff = Backoff::new();
        loop {
            let now = Instant::now();
            let (late, on_time): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|job| job.deadline <= now);
            for job in late {
                let _ = job.reply.send(Err(CommandError::Timeout));
            }
            jobs = on_time;
            if jobs.is_empty() {
                return;
            }
            let Some(turns) = decide_in_turn(&base, verified, &jobs) else {
                // A refusal on a cached state: read the tail before answering it.
                match fold_after::<A>(store, stream_id, base.clone(), |_| true).await {
                    Ok(fresh) => (base, verified) = (fresh, true),
                    Err(e) => return fail_all(jobs, e.into()),
                }
                continue;
            };
            let events: Vec<NewEvent> = turns
                .iter()
                .flat_map(|turn| match turn {
                    Turn::Decided { events, .. } => events.clone(),
                    Turn::Refused(_) => Vec::new(),
                })
                .collect();
            if events.is_empty() {
                self.cache.put(stream_id, &base);
                return self.answer(stream_id, &base, jobs, turns, &[]).await;
            }
            let count = events.len() as u64;
            let mut request = AppendRequest::single(stream_id, ExpectedVersion::Exact(base.version), events);
            if let [only] = jobs.as_slice() {
                request.idempotency = only.ctx.idempotency();
            }
            match store.append(request).await {
                Ok(outcome) if outcome.replayed => {
                    // Only a keyed command, alone in its group, can be answered by a replay.
                    let result = replayed::<A>(store, stream_id, &outcome).await;
                    for job in jobs {
                        let _ = job.reply.send(result.clone());
                    }
                    return;
                }
                Ok(outcome) => {
                    let state = turns.iter().rev().find_map(|turn| match turn {
                        Turn::Decided { state, .. } => Some(state.clone()),
                        Turn::Refused(_) => None,
                    });
                    let mut done = Loaded {
                        state: state.unwrap_or_else(|| base.state.clone()),
                        version: base.version + count,
                        snapshot_version: base.snapshot_version,
                        position: Some(outcome.last_position()),
                    };
                    match snapshot_if_due::<A>(store, stream_id, &done, SNAPSHOT_EVERY).await {
                        Ok(true) => done.snapshot_version = Some(done.version),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(stream_id, error = %e, "could not save a snapshot"),
                    }
                    self.cache.put(stream_id, &done);
                    return self.answer(stream_id, &base, jobs, turns, &outcome.positions).await;
                }
                Err(StoreError::Conflict { .. }) => {
                    // Another process wrote: read what it wrote, decide again.
                    let deadline = jobs.iter().map(|job| job.deadline).min().unwrap_or(now);
                    backoff.wait(deadline).await;
                    match fold_after::<A>(store, stream_id, base.clone(), |_| true).await {
                        Ok(fresh) => (base, verified) = (fresh, true),
                        Err(e) => return fail_all(jobs, e.into()),
                    }
                }
                Err(e) => return fail_all(jobs, e.into()),
            }
        }
    }

    /// Answers each command of a group: its own error, or its own state, version and the
    /// position of its own last event (`positions` are the appended events', in order).
    async fn answer(&self, stream_id: &str, base: &Loaded<A::State>, jobs: Vec<Job<A>>, turns: Vec<Turn<A::State>>, positions: &[Position]) {
        let mut position = base.position;
        let mut appended = 0usize;
        for (job, turn) in jobs.into_iter().zip(turns) {
            let result = match turn {
                Turn::Refused(e) => Err(e),
                Turn::Decided { events, state, version } => {
                    appended += events.len();
                    if !events.is_empty() {
                        position = appended.checked_sub(1).and_then(|i| positions.get(i)).copied();
                    }
                    let at = match position {
                        Some(p) => Ok(p),
                        None => self.position_of(stream_id, version).await,
                    };
                    position = at.as_ref().ok().copied();
                    at.map(|position| Executed {
                        state,
                        version,
                        position,
                        replayed: false,
                    })
                }
            };
            let _ = job.reply.send(result);
        }
    }

    /// The position of a stream's event at `version` (for a state that came from a snapshot).
    async fn position_of(&self, stream_id: &str, version: u64) -> Result<Position, CommandError> {
        if version == 0 {
            return Ok(Position::START);
        }
        Ok(self
            .store
            .load_stream(stream_id, version, 1)
            .await?
            .first()
            .map(|e| e.position)
            .unwrap_or_default())
    }
}

/// Decides each command against the state its predecessors left. `None` when a cached
/// (unverified) state would make us refuse or no-op a command: read the tail first.
fn decide_in_turn<A: Aggregate>(base: &Loaded<A::State>, verified: bool, jobs: &[Job<A>]) -> Option<Vec<Turn<A::State>>> {
    let mut state = base.state.clone();
    let mut version = base.version;
    let mut turns = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some(expected) = job.expected {
            if expected != version {
                if !verified {
                    return None;
                }
                turns.push(Turn::Refused(CommandError::Conflict { expected, actual: version }));
                continue;
            }
        }
        let decided = (job.decide)(&state);
        if !verified && !matches!(&decided, Ok(events) if !events.is_empty()) {
            return None;
        }
        match decided {
            Err(e) => turns.push(Turn::Refused(e)),
            Ok(events) => {
                let metadata = job.ctx.metadata();
                let encoded = events.iter().map(|e| encode(e, &metadata)).collect::<Vec<_>>();
                state = events.iter().fold(state, A::evolve);
                version += events.len() as u64;
                turns.push(Turn::Decided {
                    events: encoded,
                    state: state.clone(),
                    version,
                });
            }
        }
    }
    Some(turns)
}

/// Splits a batch into append groups, keeping the order: runs of commands without an
/// idempotency key go together; a command with a key goes alone.
fn groups<A: Aggregate>(batch: Vec<Job<A>>) -> Vec<Vec<Job<A>>> {
    let mut groups: Vec<Vec<Job<A>>> = Vec::new();
    let mut open = false;
    for job in batch {
        let keyed = job.ctx.idempotency_key.is_some();
        match groups.last_mut() {
            Some(group) if open && !keyed => group.push(job),
            _ => groups.push(vec![job]),
        }
        open = !keyed;
    }
    groups
}

fn fail_all<A: Aggregate>(jobs: Vec<Job<A>>, error: CommandError) {
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// Removes a stream's queue when its task ends without emptying it (a panic).
struct Closing<'a, A: Aggregate> {
    lane: &'a Lane<A>,
    stream_id: &'a str,
    done: bool,
}

impl<A: Aggregate> Drop for Closing<'_, A> {
    fn drop(&mut self) {
        if !self.done {
            self.lane.queues().remove(self.stream_id);
        }
    }
}

//! How far each consumer has got, without writing for events it does not consume.
//!
//! A worker writes its checkpoint only with a batch it applies (at most once per batch), so
//! the checkpoint of a caught-up worker on a category-filtered feed is the position of the
//! last event *it consumed*, usually far below the store's head. "Has projection X applied
//! position P?" is therefore answered as: the checkpoint is at or past P, OR every event up
//! to P is readable (the store's head is at or past P) and X's filtered feed holds no event in
//! (checkpoint, P]. Both halves are reads of the store's own database, so any process can ask
//! (an API-only node waiting for a worker that runs elsewhere); see [`reached`].
//!
//! In the process that runs the worker, [`Progress`] keeps the answer in memory: after each
//! step the worker records how far its feed is *covered* (the last event it applied, or the
//! head it read before a page that was not full: nothing of its feed lies between). That is
//! the cheap path of `wait_for` and `statuses`. It only ever grows, and it stays true when
//! the worker loses the lead (checkpoints never go back) or a rebuild swaps in (the new copy
//! is at or past the live checkpoint, and nothing of the feed lies between that and the
//! covered position).

use std::collections::HashMap;
use std::sync::Mutex;

use store::{EventStore, Position};
use tokio::sync::watch;

use crate::checkpoint::Checkpoint;
use crate::error::ProjectionError;
use crate::model::Model;
use crate::reactors::Reactor;
use crate::runner::PUBLISHER;

/// What one local worker has cost the database since this handle was made: the
/// transactions it committed (checkpoint moves with their read-model batches, state changes,
/// claims, failures, cleanups) and the reads it issued (checkpoint rows, feed pages and the
/// head position). Operators and tests count with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub writes: u64,
    pub reads: u64,
}

/// The local workers' covered positions and counters, and the bell that rings when a
/// covered position grows.
pub(crate) struct Progress {
    covered: Mutex<HashMap<&'static str, Position>>,
    counters: Mutex<HashMap<&'static str, WorkerCounters>>,
    pub bell: watch::Sender<u64>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            covered: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            bell: watch::channel(0).0,
        }
    }

    pub fn ring(&self) {
        self.bell.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Every event of `name`'s feed up to `position` is applied; wakes local waits when
    /// that is news.
    pub fn covered(&self, name: &'static str, position: Position) {
        let grew = match self.covered.lock() {
            Ok(mut covered) => {
                let entry = covered.entry(name).or_default();
                let grew = position > *entry;
                *entry = (*entry).max(position);
                grew
            }
            Err(_) => false,
        };
        if grew {
            self.ring();
        }
    }

    pub fn covered_here(&self, name: &str) -> Option<Position> {
        self.covered.lock().ok().and_then(|covered| covered.get(name).copied())
    }

    pub fn count(&self, name: &'static str, reads: u64, writes: u64) {
        if let Ok(mut counters) = self.counters.lock() {
            let entry = counters.entry(name).or_default();
            entry.reads += reads;
            entry.writes += writes;
        }
    }

    pub fn counters(&self) -> HashMap<String, WorkerCounters> {
        self.counters
            .lock()
            .map(|counters| counters.iter().map(|(name, c)| ((*name).to_owned(), *c)).collect())
            .unwrap_or_default()
    }
}

/// The categories of a consumer's feed: `Some(None)` for the whole log (the publisher),
/// `None` for a name no consumer has.
pub(crate) fn categories_of(name: &str) -> Option<Option<Vec<String>>> {
    let owned = |cats: &[&str]| Some(cats.iter().map(|c| (*c).to_owned()).collect());
    if let Some(model) = Model::from_name(name) {
        return Some(owned(model.categories()));
    }
    if let Some(reactor) = Reactor::from_name(name) {
        return Some(owned(reactor.categories()));
    }
    (name == PUBLISHER).then_some(None)
}

/// Whether the consumer whose row is `cp` has applied everything of its feed up to
/// `position`, from the database alone (reads only): its checkpoint is there, or the head
/// is there (so every event up to `position` is readable: the store's feed never skips) and
/// its feed's next event after the checkpoint, if any, lies beyond `position`.
pub(crate) async fn reached(
    store: &dyn EventStore,
    cp: &Checkpoint,
    categories: Option<&[String]>,
    position: Position,
) -> Result<bool, ProjectionError> {
    if cp.position() >= position {
        return Ok(true);
    }
    if store.head_position().await? < position {
        return Ok(false);
    }
    let next = store.read_all(cp.position(), 1, categories).await?;
    Ok(next.first().is_none_or(|event| event.position > position))
}

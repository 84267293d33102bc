//! A bounded cache of recent aggregate states, per aggregate type and process.
//!
//! An entry is a state with the version (and, when known, the position) it includes. It
//! is a guess, never the truth: an append with `Exact(version)` proves it current, a
//! conflict or any refusal makes the caller read the stream's tail after it first.
//! Entries only move forward (a put with an older version is ignored), so concurrent
//! writers in this process cannot roll an entry back. Eviction is first-in first-out
//! over distinct streams: cheap, and good enough for "recent".

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::aggregate::Loaded;

/// Streams remembered per aggregate type.
pub(crate) const CACHE_CAPACITY: usize = 10_000;

pub(crate) struct StateCache<S> {
    inner: Mutex<Inner<S>>,
    capacity: usize,
}

struct Inner<S> {
    entries: HashMap<String, Loaded<S>>,
    order: VecDeque<String>,
}

impl<S: Clone> StateCache<S> {
    pub(crate) fn new(capacity: usize) -> Self {
        StateCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, stream_id: &str) -> Option<Loaded<S>> {
        self.lock().entries.get(stream_id).cloned()
    }

    pub(crate) fn put(&self, stream_id: &str, loaded: &Loaded<S>) {
        if loaded.version == 0 {
            // Nothing worth remembering, and "absent" must always be re-read.
            return;
        }
        let mut inner = self.lock();
        match inner.entries.get_mut(stream_id) {
            Some(entry) if entry.version > loaded.version => {}
            Some(entry) => *entry = loaded.clone(),
            None => {
                inner.entries.insert(stream_id.to_owned(), loaded.clone());
                inner.order.push_back(stream_id.to_owned());
                while inner.entries.len() > self.capacity {
                    match inner.order.pop_front() {
                        Some(oldest) => inner.entries.remove(&oldest),
                        None => break,
                    };
                }
            }
        }
    }
}

//! What the subscribers of one stream share, so that a commit costs the work of one
//! subscriber plus the sending to each, not the whole work per subscriber.
//!
//! With 1,000 subscribers on one cart, every subscriber used to decode each event, fold it
//! onto its own copy of the cart and resolve the same GraphQL selection on the result: the
//! same work 1,000 times per commit, which kept two cores busy at 50 commits/s. Now the
//! first subscriber to reach an event does it and leaves the result in the stream's
//! [`StreamChanges`]; the others take it from there.
//!
//! Why a shared result is the one each subscriber would have computed:
//! * The fold: a stream's state after version v is a pure function of its events 1..=v, and
//!   every subscriber delivers the same events in the same order (the live feed's promise),
//!   so the state after the event with a given id is the same for every subscriber.
//! * The rendering: a resolved value is a function of the item, the document, the operation
//!   and the variables, and of nothing about the caller (who may watch the stream is decided
//!   when the subscription starts). So a rendering is shared only between subscriptions
//!   whose [`DocumentKey`]s are equal, and only when resolving it raised no error (an error
//!   belongs to one response).
//!
//! An event's result stays with its stream until each of the stream's other subscribers has
//! taken it (they are not in step: each drains its own buffer at its own pace), and at
//! most [`MAX_RECENT`] events stay; a stream with one subscriber keeps nothing. A stream's
//! entry goes when its last subscriber goes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_graphql::context::ContextSelectionSet;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{OutputType, Positioned, Request, ServerResult, Value};
use uuid::Uuid;

/// What makes two subscriptions render an item alike: the query text, the operation's name
/// and the variables. Set by the gate on every subscription request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentKey(Arc<str>);

impl DocumentKey {
    /// `None` (nothing shared) if the variables cannot be written down.
    pub fn of(request: &Request) -> Option<Self> {
        // Variables serialise in a fixed order (a sorted map), so equal variables give equal text.
        let variables = serde_json::to_string(&request.variables).ok()?;
        let operation = request.operation_name.as_deref().unwrap_or_default();
        Some(DocumentKey(format!("{}\0{operation}\0{variables}", request.query).into()))
    }
}

/// The streams that have subscribers in this process, each with what they share.
pub struct SharedChanges<S, T> {
    streams: Mutex<Streams<S, T>>,
}

struct Streams<S, T> {
    by_id: HashMap<String, Weak<StreamChanges<S, T>>>,
    /// Entries of streams nobody follows any more are swept when the map reaches this size.
    sweep_at: usize,
}

impl<S, T> Default for SharedChanges<S, T> {
    fn default() -> Self {
        SharedChanges {
            streams: Mutex::new(Streams {
                by_id: HashMap::new(),
                sweep_at: 64,
            }),
        }
    }
}

impl<S, T> SharedChanges<S, T> {
    /// The entry the subscribers of `stream_id` share; made by the first of them.
    pub fn of(&self, stream_id: &str) -> Arc<StreamChanges<S, T>> {
        let mut streams = lock(&self.streams);
        if let Some(entry) = streams.by_id.get(stream_id).and_then(Weak::upgrade) {
            return entry;
        }
        if streams.by_id.len() >= streams.sweep_at {
            streams.by_id.retain(|_, entry| entry.strong_count() > 0);
            streams.sweep_at = (streams.by_id.len() * 2).max(64);
        }
        let entry = Arc::new(StreamChanges {
            recent: Mutex::new(VecDeque::new()),
        });
        streams.by_id.insert(stream_id.to_owned(), Arc::downgrade(&entry));
        entry
    }
}

/// The events of one stream that some of its subscribers have folded and others have not
/// taken yet.
pub struct StreamChanges<S, T> {
    recent: Mutex<VecDeque<Recent<S, T>>>,
}

/// The state after an event, the item a subscription yields for it, and that item as
/// rendered for each document so far.
pub struct Folded<S, T> {
    pub state: Arc<S>,
    pub item: T,
    renders: Mutex<Vec<(DocumentKey, Value)>>,
}

impl<S, T> Folded<S, T> {
    pub fn new(state: Arc<S>, item: T) -> Self {
        Folded {
            state,
            item,
            renders: Mutex::new(Vec::new()),
        }
    }
}

struct Recent<S, T> {
    event_id: Uuid,
    folded: Arc<Folded<S, T>>,
    /// The other subscribers that have not taken it yet.
    waiting: usize,
}

/// Most events a stream keeps for subscribers that have not taken them: those that fell
/// further behind (or left) fold for themselves.
const MAX_RECENT: usize = 256;

impl<S, T> StreamChanges<S, T> {
    /// What another subscriber made of this event, if it left it here. Each subscriber takes
    /// an event once; the last one removes it.
    pub fn take(&self, event_id: Uuid) -> Option<Arc<Folded<S, T>>> {
        let mut recent = lock(&self.recent);
        let at = recent.iter().position(|r| r.event_id == event_id)?;
        let entry = &mut recent[at];
        entry.waiting = entry.waiting.saturating_sub(1);
        let folded = entry.folded.clone();
        if entry.waiting == 0 {
            recent.remove(at);
        }
        Some(folded)
    }

    /// Leaves what this subscriber made of an event for the stream's other subscribers (if
    /// there are any, and nobody left it first).
    pub fn keep(self: &Arc<Self>, event_id: Uuid, folded: &Arc<Folded<S, T>>) {
        // Every subscription of the stream holds one reference (the registry's is weak).
        let others = Arc::strong_count(self).saturating_sub(1);
        if others == 0 {
            return;
        }
        let mut recent = lock(&self.recent);
        if recent.iter().any(|r| r.event_id == event_id) {
            return;
        }
        if recent.len() >= MAX_RECENT {
            recent.pop_front();
        }
        recent.push_back(Recent {
            event_id,
            folded: folded.clone(),
            waiting: others,
        });
    }
}

/// A subscription's item that resolves like `T`, but once per document for all the
/// stream's subscribers that share its [`Folded`].
pub struct Shared<S, T>(pub Arc<Folded<S, T>>);

impl<S: Send + Sync, T: OutputType> OutputType for Shared<S, T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let folded = &self.0;
        let Some(key) = ctx.data_opt::<DocumentKey>() else {
            return folded.item.resolve(ctx, field).await;
        };
        let rendered = lock(&folded.renders).iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if let Some(value) = rendered {
            return Ok(value);
        }
        // Field errors of nullable fields are collected beside the value: a rendering that
        // raised one is this response's own.
        let errors_before = errors_so_far(ctx);
        let value = folded.item.resolve(ctx, field).await?;
        if errors_before.is_some() && errors_so_far(ctx) == errors_before {
            let mut renders = lock(&folded.renders);
            if !renders.iter().any(|(k, _)| k == key) {
                renders.push((key.clone(), value.clone()));
            }
        }
        Ok(value)
    }
}

/// The field errors this response has collected so far.
fn errors_so_far(ctx: &ContextSelectionSet<'_>) -> Option<usize> {
    ctx.query_env.errors.lock().ok().map(|errors| errors.len())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is one assignment: a panic cannot leave them half-done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

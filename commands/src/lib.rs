//! The write side of cartsource: everything between a command and the events it appends.
//! Depends on `domain` (decide/evolve) and `store` (events as records); used by `api`
//! (mutations) and `projections` (reactors). Knows no read model and no GraphQL.
//!
//! It owns:
//! * loading an aggregate: snapshot + upcast events after it, or a cached state plus the
//!   stream's tail (`aggregate`, `cache`); encoding/decoding domain events as records;
//! * the command loop (`mailbox`): per stream and process, commands are queued, decided
//!   in order against the current state and appended together in one atomic append,
//!   each keeping its own outcome; across processes `Exact(version)` appends and
//!   re-deciding after a conflict keep it correct;
//! * expectations and retries: a client's expected version is enforced (against the
//!   store, never a stale cache); without one a command never fails because of other
//!   writers, it retries until its deadline and then answers [`CommandError::Timeout`];
//! * idempotency outcomes (`idempotency`): a repeated key answers the first outcome;
//! * erasure of a customer's personal data (`erasure`): their data key shredded with the
//!   `PersonalDataErased` event that records it;
//! * the facts a command needs: the cart's owner (checked on the state the command
//!   loads, `cart`), the product's current name and price, the stock for an order
//!   (`place_order`).
//!
//! One [`Commands`] per process (it holds the mailboxes and the cache); clones share it.

mod aggregate;
mod cache;
mod cart;
mod context;
mod erasure;
mod error;
mod idempotency;
mod mailbox;
mod place_order;
mod retry;
pub mod trace;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::{EventStore, StoreError};
use tokio::sync::oneshot;

pub use aggregate::{
    decode, decode_loaded, encode, load, load_until, snapshot_if_due, Aggregate, CartAggregate, CustomerAggregate, Loaded, OrderAggregate,
    ProductAggregate,
};
pub use context::{CommandContext, Executed, DEFAULT_BUDGET};
pub use erasure::Erasure;
pub use error::CommandError;
pub use place_order::PlacedOrder;

use idempotency::{replayed, stored_outcome};
use mailbox::{Job, Lane};

/// The write model of one process: the store, the per-stream mailboxes and the cache of
/// recent states, one lane per aggregate type. Cheap to clone.
#[derive(Clone)]
pub struct Commands {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn EventStore>,
    lanes: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Commands {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Commands {
            inner: Arc::new(Inner {
                store,
                lanes: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    fn lane<A: Aggregate>(&self) -> Arc<Lane<A>> {
        let mut lanes = self.inner.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let lane = lanes
            .entry(TypeId::of::<A>())
            .or_insert_with(|| Arc::new(Lane::<A>::new(self.inner.store.clone())))
            .clone();
        drop(lanes);
        match lane.downcast::<Lane<A>>() {
            Ok(lane) => lane,
            // Keyed by the type's own id: another type cannot be there.
            Err(_) => unreachable!("lanes are keyed by their aggregate type"),
        }
    }

    /// Decides and appends a command on one stream through its mailbox. `decide` may run
    /// more than once (after a conflict with another process), always against the state
    /// at the command's turn.
    pub async fn execute<A, F, E>(
        &self,
        ctx: &CommandContext,
        stream_id: &str,
        expected: Option<u64>,
        decide: F,
    ) -> Result<Executed<A::State>, CommandError>
    where
        A: Aggregate,
        F: Fn(&A::State) -> Result<Vec<A::Event>, E> + Send + 'static,
        E: Into<CommandError>,
    {
        let store = self.store().as_ref();
        if let Some(outcome) = stored_outcome(store, ctx).await? {
            return replayed::<A>(store, stream_id, &outcome).await;
        }
        let (reply, answer) = oneshot::channel();
        self.lane::<A>().submit(
            stream_id,
            Job {
                ctx: ctx.traced(),
                expected,
                decide: Box::new(move |state| decide(state).map_err(Into::into)),
                deadline: ctx.deadline(),
                reply,
            },
        );
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Corrupt(format!("the mailbox of {stream_id} stopped (a bug; see the log)")).into()))
    }

    /// The current state of a stream: the cached state plus the stream's tail after it
    /// (one read), or a full load when it is not cached.
    pub async fn current<A: Aggregate>(&self, stream_id: &str) -> Result<Loaded<A::State>, CommandError> {
        let lane = self.lane::<A>();
        let store = self.store().as_ref();
        let loaded = match lane.cache.get(stream_id) {
            Some(cached) => aggregate::fold_after::<A>(store, stream_id, cached, |_| true).await?,
            None => load::<A>(store, stream_id).await?,
        };
        lane.cache.put(stream_id, &loaded);
        Ok(loaded)
    }

    /// Remembers a state this process just wrote (multi-stream appends).
    fn remember<A: Aggregate>(&self, stream_id: &str, loaded: &Loaded<A::State>) {
        self.lane::<A>().cache.put(stream_id, loaded);
    }
}

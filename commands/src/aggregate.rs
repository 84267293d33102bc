//! Between the domain's events and the store's records: encoding domain events for an
//! append, decoding recorded ones, and loading an aggregate as the latest valid snapshot
//! plus the events after it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use domain::Event;

use store::{EventData, EventStore, Metadata, NewEvent, Position, RecordedEvent, Snapshot, StoreError, StreamEvent};

/// Page size when folding a stream.
const PAGE: usize = 1_000;

/// What the store needs to know of an aggregate to load it.
pub trait Aggregate: Send + Sync + 'static {
    type Event: Event + Send + Sync + 'static;
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Bumped whenever the state's shape or meaning changes, so old snapshots are ignored.
    const STATE_SCHEMA_VERSION: i32;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
}

pub struct CartAggregate;
pub struct ProductAggregate;
pub struct OrderAggregate;
pub struct CustomerAggregate;

impl Aggregate for CartAggregate {
    type Event = domain::CartEvent;
    type State = domain::CartState;
    const STATE_SCHEMA_VERSION: i32 = domain::cart::STATE_SCHEMA_VERSION;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        domain::cart::evolve(state, event)
    }
}

impl Aggregate for ProductAggregate {
    type Event = domain::ProductEvent;
    type State = domain::ProductState;
    const STATE_SCHEMA_VERSION: i32 = domain::product::STATE_SCHEMA_VERSION;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        domain::product::evolve(state, event)
    }
}

impl Aggregate for OrderAggregate {
    type Event = domain::OrderEvent;
    type State = domain::OrderState;
    const STATE_SCHEMA_VERSION: i32 = domain::order::STATE_SCHEMA_VERSION;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        domain::order::evolve(state, event)
    }
}

impl Aggregate for CustomerAggregate {
    type Event = domain::CustomerEvent;
    type State = domain::CustomerState;
    const STATE_SCHEMA_VERSION: i32 = domain::customer::STATE_SCHEMA_VERSION;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State {
        domain::customer::evolve(state, event)
    }
}

/// A domain event as a record to append, in its current schema: its data printed straight
/// to JSON text ([`Event::to_json`]), no tree in between.
pub fn encode<E: Event>(event: &E, metadata: &Metadata) -> NewEvent {
    let data = event.to_json();
    let data = EventData::from_json(data).unwrap_or_else(|e| panic!("event {event:?} encoded to invalid JSON: {e}"));
    NewEvent::new(event.event_type(), event.schema_version(), data, metadata.clone())
}

/// A recorded (already upcast) event as a domain event.
pub fn decode<E: Event>(recorded: &RecordedEvent) -> Result<E, StoreError> {
    decode_data(&recorded.stream_id, recorded.version, &recorded.event_type, &recorded.data)
}

/// An event of a stream as loaded for folding ([`EventStore::load_stream`]) as a domain event.
pub fn decode_loaded<E: Event>(stream_id: &str, loaded: &StreamEvent) -> Result<E, StoreError> {
    decode_data(stream_id, loaded.version, &loaded.event_type, &loaded.data)
}

fn decode_data<E: Event>(stream_id: &str, version: u64, event_type: &str, data: &EventData) -> Result<E, StoreError> {
    E::from_json(event_type, data.get()).map_err(|e| StoreError::Corrupt(format!("{event_type} v{version} of {stream_id}: {e}")))
}

/// An aggregate's state and the stream version it includes (the expected version for
/// the next append).
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<S> {
    pub state: S,
    pub version: u64,
    /// The version of the snapshot the load started from, if one was used.
    pub snapshot_version: Option<u64>,
    /// The global position of the event at `version`, when the load read it (not when
    /// the state came whole from a snapshot).
    pub position: Option<Position>,
}

impl<S: Default> Loaded<S> {
    /// Before the stream's first event.
    pub fn empty() -> Self {
        Loaded {
            state: S::default(),
            version: 0,
            snapshot_version: None,
            position: Some(Position::START),
        }
    }
}

/// Loads an aggregate: the snapshot saved under the current state schema version (if it
/// reads back), then the events after it. A snapshot from older code, or one that no
/// longer deserialises, is skipped and the stream folded from the start.
pub async fn load<A: Aggregate>(store: &dyn EventStore, stream_id: &str) -> Result<Loaded<A::State>, StoreError> {
    let mut loaded = Loaded::empty();
    if let Some(snapshot) = store.load_snapshot(stream_id, A::STATE_SCHEMA_VERSION).await? {
        match serde_json::from_value::<A::State>(snapshot.state) {
            Ok(state) => {
                loaded = Loaded {
                    state,
                    version: snapshot.version,
                    snapshot_version: Some(snapshot.version),
                    position: None,
                }
            }
            Err(e) => tracing::warn!(stream_id, error = %e, "ignoring a snapshot that no longer reads back"),
        }
    }
    fold_after::<A>(store, stream_id, loaded, |_| true).await
}

/// Folds a stream from its first event while `keep` says yes (time travel: up to a
/// version or a moment). Never uses snapshots: they only exist for the newest state.
pub async fn load_until<A: Aggregate>(
    store: &dyn EventStore,
    stream_id: &str,
    keep: impl Fn(&StreamEvent) -> bool,
) -> Result<Loaded<A::State>, StoreError> {
    fold_after::<A>(store, stream_id, Loaded::empty(), keep).await
}

/// Folds the events after `loaded.version` onto it, page by page, until the stream ends
/// or `keep` says no. With a cached state this reads only the stream's tail.
pub(crate) async fn fold_after<A: Aggregate>(
    store: &dyn EventStore,
    stream_id: &str,
    mut loaded: Loaded<A::State>,
    keep: impl Fn(&StreamEvent) -> bool,
) -> Result<Loaded<A::State>, StoreError> {
    loop {
        let page = store.load_stream(stream_id, loaded.version + 1, PAGE).await?;
        for recorded in &page {
            if !keep(recorded) {
                return Ok(loaded);
            }
            loaded.state = A::evolve(loaded.state, &decode_loaded::<A::Event>(stream_id, recorded)?);
            loaded.version = recorded.version;
            loaded.position = Some(recorded.position);
        }
        if page.len() < PAGE {
            return Ok(loaded);
        }
    }
}

/// Saves a snapshot when at least `every` events were folded since the last one.
pub async fn snapshot_if_due<A: Aggregate>(
    store: &dyn EventStore,
    stream_id: &str,
    loaded: &Loaded<A::State>,
    every: u64,
) -> Result<bool, StoreError> {
    if every == 0 || loaded.version - loaded.snapshot_version.unwrap_or(0) < every {
        return Ok(false);
    }
    let state = serde_json::to_value(&loaded.state).map_err(|e| StoreError::Corrupt(format!("cannot serialise the state of {stream_id}: {e}")))?;
    store
        .save_snapshot(&Snapshot {
            stream_id: stream_id.to_owned(),
            state_schema_version: A::STATE_SCHEMA_VERSION,
            version: loaded.version,
            state,
        })
        .await?;
    Ok(true)
}

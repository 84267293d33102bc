//! The records the store knows: events as (stream, type, schema version, JSON data,
//! metadata). The store never interprets `data`; the domain and the upcasters do.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreError;

/// Most events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
/// Longest stream id, in characters.
pub const MAX_STREAM_ID_LEN: usize = 200;
/// Most categories one filtered read of the global feed may name (each is read along its
/// own index range; there are three today).
pub const MAX_FEED_CATEGORIES: usize = 32;

/// Refuses a category filter longer than [`MAX_FEED_CATEGORIES`] (both backends' `read_all`,
/// and the API before it subscribes).
pub fn check_feed_categories(categories: Option<&[String]>) -> Result<(), StoreError> {
    match categories {
        Some(c) if c.len() > MAX_FEED_CATEGORIES => Err(StoreError::InvalidRequest(format!(
            "{} categories in one feed read; at most {MAX_FEED_CATEGORIES}",
            c.len()
        ))),
        _ => Ok(()),
    }
}

/// A place in the global log. Strictly increasing in the order readers receive events;
/// not dense (Postgres positions encode the writing transaction, see `postgres/mod.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event: reading after it reads everything.
    pub const START: Position = Position(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an append expects of a stream before it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Whatever the stream holds (the store still assigns gap-free versions).
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream's last event has exactly this version (0 = no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at version `actual` (0: no events) is what this expects.
    pub fn is_met_by(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }

    /// As both backends' append statements take it: the expected version, 0 for no stream,
    /// -1 for any.
    pub(crate) fn as_param(self) -> i64 {
        match self {
            ExpectedVersion::Any => -1,
            ExpectedVersion::NoStream => 0,
            // A version past i64::MAX cannot exist, so it can never match.
            ExpectedVersion::Exact(v) => i64::try_from(v).unwrap_or(i64::MAX),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who and what caused an event. Stored as JSON next to the event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together everything one request caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event (or command) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// A customer id, an admin id or a worker's name.
    #[serde(default)]
    pub actor: String,
    /// The command's idempotency key, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The distributed trace the event was appended in, so the workers that consume it
    /// continue that trace (added later: older events have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// A W3C Trace Context (<https://www.w3.org/TR/trace-context/>) as its two headers would
/// carry it. The store keeps the text as given; the `commands` crate reads and writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    /// The data as JSON text, what both backends store: made once, where the event is
    /// encoded (`EventData::from_json`, or from a `serde_json::Value`).
    pub data: EventData,
    pub metadata: Metadata,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, schema_version: i32, data: impl Into<EventData>, metadata: Metadata) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version,
            data: data.into(),
            metadata,
        }
    }

    /// Its data and metadata as JSON text, what both backends store.
    pub(crate) fn json_text(&self) -> Result<(&str, String), StoreError> {
        let metadata = serde_json::to_string(&self.metadata).map_err(|e| StoreError::InvalidRequest(format!("event metadata is not JSON: {e}")))?;
        Ok((self.data.get(), metadata))
    }
}

/// An event's `data` as read: the JSON text exactly as the database returned it, one JSON
/// value, not parsed into a tree. Readers decode it straight into their own types
/// (`domain`'s `from_json`, which checks the text as it decodes it): building a
/// `serde_json::Value` for every event read, then decoding that, was most of the store's
/// read cost in the profile of issue #11.
#[derive(Clone, Debug)]
pub struct EventData(Box<str>);

impl EventData {
    /// Checks that `json` is one JSON value and keeps it as it is.
    pub fn from_json(json: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&json)?;
        Ok(EventData(json.into_boxed_str()))
    }

    /// Text the database checked to be one JSON value when it stored it (a Postgres `json`
    /// column, a SQLite column checked with `json_valid`), kept without checking it again:
    /// that second parse was a tenth of the client's time reading the feed in the profile of
    /// issue #11. Whoever decodes it checks it anyway.
    pub(crate) fn from_json_column(json: String) -> Self {
        EventData(json.into_boxed_str())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// As a JSON tree, for readers that want one (GraphQL's `JSON` scalar, upcasters).
    pub fn to_value(&self) -> serde_json::Value {
        // Parsing what is JSON does not fail.
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// Written as the JSON value it is, not as a string.
impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(|raw| EventData(raw.into()))
    }
}

impl From<&serde_json::Value> for EventData {
    fn from(value: &serde_json::Value) -> Self {
        // A `Value` always serialises to valid JSON.
        EventData(value.to_string().into_boxed_str())
    }
}

impl From<serde_json::Value> for EventData {
    fn from(value: serde_json::Value) -> Self {
        EventData::from(&value)
    }
}

/// Equal when they mean the same JSON (key order and spacing aside), as `Value`s compare.
impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl PartialEq<serde_json::Value> for EventData {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl PartialEq<EventData> for serde_json::Value {
    fn eq(&self, other: &EventData) -> bool {
        other == self
    }
}

/// An event as stored, after upcasting to its current schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: String,
    /// 1, 2, 3, ... within the stream, no gaps.
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    /// The schema version after upcasting (what `data` now conforms to).
    pub schema_version: i32,
    pub data: EventData,
    pub metadata: Metadata,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

impl RecordedEvent {
    pub fn category(&self) -> &str {
        category_of(&self.stream_id)
    }
}

/// A stream's event as folding an aggregate needs it ([`EventStore::load_stream`]): the
/// record without the stream id (the caller named it), the event id and the metadata, which
/// made up most of what a load read and decoded (issue #11).
///
/// [`EventStore::load_stream`]: crate::EventStore::load_stream
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    pub position: Position,
    pub version: u64,
    pub event_type: String,
    /// The schema version after upcasting (what `data` now conforms to).
    pub schema_version: i32,
    pub data: EventData,
    pub recorded_at: OffsetDateTime,
}

impl From<RecordedEvent> for StreamEvent {
    fn from(e: RecordedEvent) -> Self {
        StreamEvent {
            position: e.position,
            version: e.version,
            event_type: e.event_type,
            schema_version: e.schema_version,
            data: e.data,
            recorded_at: e.recorded_at,
        }
    }
}

/// The category of a stream: the part of its id before the first '-' (`cart-<uuid>` -> `cart`).
pub fn category_of(stream_id: &str) -> &str {
    stream_id.split_once('-').map_or(stream_id, |(category, _)| category)
}

/// The events for one stream within an append, with what the stream must look like first.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// (actor, key) names a command; the fingerprint says what the command was, so the same key
/// sent with a different request is told apart from an honest retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub actor: String,
    pub key: String,
    pub fingerprint: String,
}

/// One atomic append across one or several streams.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AppendRequest {
    pub streams: Vec<StreamAppend>,
    pub idempotency: Option<IdempotencyKey>,
}

impl AppendRequest {
    pub fn single(stream_id: impl Into<String>, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        AppendRequest {
            streams: vec![StreamAppend {
                stream_id: stream_id.into(),
                expected,
                events,
            }],
            idempotency: None,
        }
    }

    pub fn with_stream(mut self, stream_id: impl Into<String>, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        self.streams.push(StreamAppend {
            stream_id: stream_id.into(),
            expected,
            events,
        });
        self
    }

    pub fn with_idempotency(mut self, key: IdempotencyKey) -> Self {
        self.idempotency = Some(key);
        self
    }

    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// Rejects what no backend may write: no streams, a stream without events, an empty or
    /// overlong stream id, a stream twice in one call, or more than
    /// [`MAX_EVENTS_PER_APPEND`] events (Postgres positions leave room for 2^20 per call).
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |why: String| Err(StoreError::InvalidRequest(why));
        if self.streams.is_empty() {
            return invalid("an append needs at least one stream".into());
        }
        let count = self.event_count();
        if count > MAX_EVENTS_PER_APPEND {
            return invalid(format!("{count} events in one append; at most {MAX_EVENTS_PER_APPEND}"));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.streams.len());
        for stream in &self.streams {
            if stream.stream_id.is_empty() || stream.stream_id.chars().count() > MAX_STREAM_ID_LEN {
                return invalid(format!("a stream id must have 1 to {MAX_STREAM_ID_LEN} characters"));
            }
            if stream.events.is_empty() {
                return invalid(format!("no events for stream {}", stream.stream_id));
            }
            if !seen.insert(stream.stream_id.as_str()) {
                return invalid(format!("stream {} appears twice in one append", stream.stream_id));
            }
        }
        Ok(())
    }
}

/// What one stream looks like after an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOutcome {
    pub stream_id: String,
    /// Version of the first event appended to this stream by the call.
    pub first_version: u64,
    /// Version of the stream after the call.
    pub last_version: u64,
}

/// The result of an append; for an idempotent repeat, the stored result of the first call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// In the order of the request's streams.
    pub streams: Vec<StreamOutcome>,
    /// Positions of the appended events, in request order (stream by stream).
    pub positions: Vec<Position>,
    /// True when this is the stored outcome of an earlier call with the same idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

impl AppendOutcome {
    pub fn last_position(&self) -> Position {
        self.positions.iter().copied().max().unwrap_or_default()
    }

    pub fn stream(&self, stream_id: &str) -> Option<&StreamOutcome> {
        self.streams.iter().find(|s| s.stream_id == stream_id)
    }
}

/// Aggregate state saved to shorten loading. `state_schema_version` is the version of the
/// *state's* shape: a snapshot written by older code has another number and is ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub stream_id: String,
    pub state_schema_version: i32,
    /// The stream version the state includes.
    pub version: u64,
    pub state: serde_json::Value,
}

/// The stream the store writes one [`STREAM_ARCHIVED`] event to for every stream it
/// archives, in the same transaction as the move: the global feed says, in order, that a
/// stream is gone, so a read model can drop its rows and a rebuild does the same at the same
/// point. Its category is `archive`; no domain stream uses it.
pub const ARCHIVE_LOG_STREAM: &str = "archive-log";
/// The type of the events of [`ARCHIVE_LOG_STREAM`], with data
/// `{"stream_id": "...", "version": n, "reason": "RETENTION" | "ADMIN"}`.
pub const STREAM_ARCHIVED: &str = "StreamArchived";

/// Why a stream was archived (kept in its tombstone and in the archive log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ArchiveReason {
    /// The retention policy: a stream idle for longer than the configured period.
    Retention,
    /// An administrator, on demand.
    Admin,
}

impl ArchiveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveReason::Retention => "RETENTION",
            ArchiveReason::Admin => "ADMIN",
        }
    }
}

/// The data of a [`STREAM_ARCHIVED`] event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamArchivedData {
    pub stream_id: String,
    /// The archived stream's last version.
    pub version: u64,
    pub reason: ArchiveReason,
}

impl StreamArchivedData {
    /// The event's data and metadata as the JSON text an archive writes, `actor` in the
    /// metadata.
    pub(crate) fn record(&self, actor: &str) -> Result<(String, String), StoreError> {
        let data = serde_json::to_string(self).map_err(|e| StoreError::Corrupt(format!("cannot encode StreamArchived: {e}")))?;
        let metadata = Metadata {
            actor: actor.to_owned(),
            ..Default::default()
        };
        let metadata = serde_json::to_string(&metadata).map_err(|e| StoreError::Corrupt(format!("cannot encode metadata: {e}")))?;
        Ok((data, metadata))
    }
}

/// A stream's tombstone: it was archived whole and can never be appended to again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedStream {
    pub stream_id: String,
    /// Its last version; the version is never reused.
    pub version: u64,
    pub reason: String,
    pub actor: String,
    pub archived_at: OffsetDateTime,
}

/// What [`EventStore::archive_stream`](crate::EventStore::archive_stream) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveOutcome {
    /// The stream's last version (now its tombstone's).
    pub version: u64,
    /// Events moved out of the hot table by this call (0 if it was archived already).
    pub moved: u64,
    /// It was archived before this call; nothing was done.
    pub already: bool,
    /// The position of the [`STREAM_ARCHIVED`] event (`None` if `already`).
    pub position: Option<Position>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_data_is_written_as_the_json_value_it_holds() {
        let data = EventData::from_json_column(r#"{"sku": "tea", "quantity": 2}"#.to_owned());
        let written = serde_json::to_string(&data).unwrap();
        assert_eq!(written, r#"{"sku": "tea", "quantity": 2}"#, "a value, not a string");
        let read: EventData = serde_json::from_str(&written).unwrap();
        assert_eq!(read, json!({"sku": "tea", "quantity": 2}));
        assert!(EventData::from_json("{} {}".to_owned()).is_err());
        assert!(EventData::from_json(r#"{"a": [1, 2]}"#.to_owned()).is_ok());
    }

    fn request(streams: &[(&str, usize)]) -> AppendRequest {
        let mut request = AppendRequest::default();
        for (id, n) in streams {
            let events = (0..*n).map(|_| NewEvent::new("E", 1, json!({}), Metadata::default())).collect();
            request = request.with_stream(*id, ExpectedVersion::Any, events);
        }
        request
    }

    #[test]
    fn validation_rejects_malformed_requests() {
        assert!(request(&[("cart-1", 1), ("order-1", 2)]).validate().is_ok());
        for bad in [
            request(&[]),
            request(&[("cart-1", 0)]),
            request(&[("", 1)]),
            request(&[("cart-1", 1), ("cart-1", 1)]),
            request(&[("a", 10_001)]),
        ] {
            assert!(matches!(bad.validate(), Err(StoreError::InvalidRequest(_))), "{bad:?}");
        }
        let long = "x".repeat(MAX_STREAM_ID_LEN + 1);
        assert!(request(&[(long.as_str(), 1)]).validate().is_err());
    }
}

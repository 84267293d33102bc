//! How the SQLite backend writes values as text and integers and reads them back: times
//! as fixed-width RFC 3339 text, JSON as text, ids as text, versions and positions as i64.
//!
//! Event data is read as the JSON text it is without being checked again: `events` takes
//! only text that `json_valid` accepts, and the archive holds copies of its rows.

use sqlx::sqlite::SqliteRow;
use time::format_description::well_known::Rfc3339;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::{AppendOutcome, EventData, Metadata, Position, RecordedEvent, StreamEvent};
use crate::upcast::upcast;

/// The one form times are stored in: fixed width, UTC, microseconds.
const TIMESTAMP: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::InvalidRequest(format!("{what} {value} is out of range")))
}

pub(super) fn from_i64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

/// For query bounds: a u64 beyond i64 is "beyond everything".
pub(super) fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn format_timestamp(at: OffsetDateTime) -> Result<String, StoreError> {
    at.to_offset(UtcOffset::UTC)
        .format(TIMESTAMP)
        .map_err(|e| StoreError::InvalidRequest(format!("cannot store time {at}: {e}")))
}

pub(super) fn parse_timestamp(text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| StoreError::Corrupt(format!("stored time {text:?} is not RFC 3339: {e}")))
}

pub(super) fn parse_outcome(text: &str) -> Result<AppendOutcome, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored append outcome: {e}")))
}

/// Rows decoded once the statement has run, not one by one as they arrive (`query_as`):
/// sqlx copies each value of a row on the connection's thread (`sqlite3_value_dup`) and
/// frees it where the row is dropped (`sqlite3_value_free`), both under SQLite's global
/// memory mutex. Rows decoded and dropped as they came were freed on this thread while that
/// one allocated the next: in `perf`, the contended mutex (futex waits and wake-ups) was a
/// quarter of the time of loading a stream.
pub(super) fn decode_rows<R: for<'r> sqlx::FromRow<'r, SqliteRow>>(rows: Vec<SqliteRow>) -> Result<Vec<R>, StoreError> {
    Ok(rows.iter().map(R::from_row).collect::<Result<Vec<R>, sqlx::Error>>()?)
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    position: i64,
    event_id: String,
    stream_id: String,
    version: i64,
    event_type: String,
    schema_version: i32,
    data: String,
    metadata: String,
    recorded_at: String,
}

impl EventRow {
    fn into_event(self) -> Result<RecordedEvent, StoreError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("event at position {}: {what}: {e}", self.position));
        let event_id = Uuid::parse_str(&self.event_id).map_err(|e| corrupt("event_id", &e))?;
        let data = EventData::from_json_column(self.data);
        let metadata: Metadata = serde_json::from_str(&self.metadata).map_err(|e| corrupt("metadata", &e))?;
        let recorded_at = parse_timestamp(&self.recorded_at)?;
        let (schema_version, data) = upcast(&self.event_type, self.schema_version, data)?;
        Ok(RecordedEvent {
            position: Position(from_i64(self.position, "position")?),
            stream_id: self.stream_id,
            version: from_i64(self.version, "version")?,
            event_id,
            event_type: self.event_type,
            schema_version,
            data,
            metadata,
            recorded_at,
        })
    }
}

/// A row of one stream, by version (what `stream_rows` checks the first row of).
pub(super) trait Versioned {
    fn version(&self) -> i64;
}

impl Versioned for EventRow {
    fn version(&self) -> i64 {
        self.version
    }
}

impl Versioned for StreamEventRow {
    fn version(&self) -> i64 {
        self.version
    }
}

pub(super) fn into_events(rows: Vec<EventRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.into_iter().map(EventRow::into_event).collect()
}

/// The columns `load_stream` reads.
#[derive(sqlx::FromRow)]
pub(super) struct StreamEventRow {
    position: i64,
    version: i64,
    event_type: String,
    schema_version: i32,
    data: String,
    recorded_at: String,
}

impl StreamEventRow {
    fn into_event(self) -> Result<StreamEvent, StoreError> {
        let data = EventData::from_json_column(self.data);
        let (schema_version, data) = upcast(&self.event_type, self.schema_version, data)?;
        Ok(StreamEvent {
            position: Position(from_i64(self.position, "position")?),
            version: from_i64(self.version, "version")?,
            event_type: self.event_type,
            schema_version,
            data,
            recorded_at: parse_timestamp(&self.recorded_at)?,
        })
    }
}

pub(super) fn into_stream_events(rows: Vec<StreamEventRow>) -> Result<Vec<StreamEvent>, StoreError> {
    rows.into_iter().map(StreamEventRow::into_event).collect()
}

//! The one contract both backends keep. The behaviour suite in `tests/contract` holds
//! every implementation to it.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::event::{
    AppendOutcome, AppendRequest, ArchiveOutcome, ArchiveReason, ArchivedStream, ExpectedVersion, Position, RecordedEvent, Snapshot, StreamEvent,
};

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends to one or several streams atomically: every expectation holds and every event
    /// is written, or nothing is. With an idempotency key already used for the same request,
    /// returns the first call's outcome (`replayed = true`) and writes nothing.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// Events of one stream with `version >= from_version`, oldest first, at most `limit`.
    async fn read_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`EventStore::read_stream`] with only what folding an aggregate needs (`commands`
    /// loads with it). The backends read just those columns; this default reads the whole
    /// records, for wrappers that have nothing better.
    async fn load_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<StreamEvent>, StoreError> {
        Ok(self
            .read_stream(stream_id, from_version, limit)
            .await?
            .into_iter()
            .map(StreamEvent::from)
            .collect())
    }

    /// The stream's current version (0 when it has no events).
    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError>;

    /// The global log after `after`, in position order, at most `limit`, optionally only
    /// streams of the given categories. Never skips: an event not returned now because a
    /// transaction that may precede it is still open will be returned by a later read
    /// after the same position.
    async fn read_all(&self, after: Position, limit: usize, categories: Option<&[String]>) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The last position a reader of the global log can see now.
    async fn head_position(&self) -> Result<Position, StoreError>;

    /// The stored outcome of an earlier append with this (actor, key), if any.
    async fn idempotent_outcome(&self, actor: &str, key: &str) -> Result<Option<(String, AppendOutcome)>, StoreError>;

    /// The snapshot of a stream written with this state schema version, if any.
    async fn load_snapshot(&self, stream_id: &str, state_schema_version: i32) -> Result<Option<Snapshot>, StoreError>;

    /// Saves (or replaces) a snapshot; never moves a snapshot back to an older version.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Archives a whole stream (#15): moves its events from the hot table to the archive,
    /// leaves a tombstone (appends are refused with [`StoreError::StreamArchived`] for ever,
    /// the version is never reused, reads answer the same error) and writes one
    /// `StreamArchived` event to `archive-log`, all in one transaction. `expected` is checked
    /// like an append's (`Exact(n)`: only if nothing was appended since the caller looked).
    /// Archiving a stream archived before answers `already`; a stream with no events is
    /// refused (a tombstone would only block an id nobody used).
    ///
    /// The global feed does not change: positions never move, and `read_all` reads the hot
    /// table and the archive together in one snapshot, so every reader (projection, rebuild,
    /// subscription) sees each event exactly once whether it reads before or after the move.
    async fn archive_stream(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        reason: ArchiveReason,
        actor: &str,
    ) -> Result<ArchiveOutcome, StoreError> {
        let _ = (stream_id, expected, reason, actor);
        Err(StoreError::InvalidRequest("this store cannot archive".into()))
    }

    /// Moves the events of a stream at versions `<= through` to the archive, keeping the
    /// stream (its version, its last event, appends to it). Only behind a snapshot that the
    /// caller has saved: loads start from the snapshot and never touch the archive; a read
    /// from an older version still gets every event (from the archive, slower). Never moves
    /// the last event. Returns how many events moved.
    async fn truncate_stream(&self, stream_id: &str, through: u64) -> Result<u64, StoreError> {
        let _ = (stream_id, through);
        Err(StoreError::InvalidRequest("this store cannot truncate".into()))
    }

    /// The tombstone of an archived stream, if it was archived.
    async fn archived_stream(&self, stream_id: &str) -> Result<Option<ArchivedStream>, StoreError> {
        let _ = stream_id;
        Ok(None)
    }

    /// A doorbell that changes whenever new events may be readable: after this process's
    /// own commits, and (Postgres) after a NOTIFY from another process or a listener
    /// reconnect. It only wakes readers; they always re-read from their checkpoint.
    fn doorbell(&self) -> watch::Receiver<u64>;
}

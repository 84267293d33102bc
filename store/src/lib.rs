//! The event store: the only source of truth in cartsource.
//!
//! It knows events as records (stream id, type, schema version, JSON data, metadata) and
//! nothing of the domain or GraphQL (the `commands` crate encodes domain events into records
//! and loads aggregates); old schemas are lifted on read by `upcast`. Two backends keep one contract
//! ([`EventStore`]), held to it by one behaviour suite (`tests/contract`):
//!
//! * [`PgStore`] (production): concurrent appends without a global lock; the global
//!   feed is gap-free because readers only read below the oldest transaction still in
//!   flight (see the reasoning in `postgres/mod.rs`); LISTEN/NOTIFY rings the doorbell.
//! * [`SqliteStore`] (embedded default): one writer at a time, which makes the feed
//!   gap-free by construction; the doorbell is in-process.
//!
//! Guarantees: appends are atomic across streams; stream versions are 1, 2, 3, ... with no
//! gap; an unmet expectation rejects the whole append with [`StoreError::Conflict`]; a
//! reader of the global log never skips an event and sees positions strictly increase;
//! subscriptions deliver each event once, in order; stored bytes are never rewritten.
//!
//! Archiving (#15, `EventStore::archive_stream`, `truncate_stream`) moves events, bytes and
//! positions unchanged, from the hot table to an archive table in one transaction; the
//! global feed reads both in one snapshot, so it is the same for every reader before and
//! after. An archived stream keeps a tombstone: appends and reads answer
//! [`StoreError::StreamArchived`] and its version never restarts.
//!
//! [`LiveFeed`] (`live`) is the one reader per process that follows the committed feed
//! and hands events in memory to the subscribers of a stream or a category.

pub mod connect;
pub mod error;
pub mod event;
pub mod event_store;
pub mod keys;
pub mod live;
pub mod postgres;
pub mod sqlite;
mod startup;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upcast;

pub use connect::{connect, open, open_with, Database};
pub use error::StoreError;
pub use event::{
    category_of, check_feed_categories, AppendOutcome, AppendRequest, ArchiveOutcome, ArchiveReason, ArchivedStream, EventData, ExpectedVersion,
    IdempotencyKey, Metadata, NewEvent, Position, RecordedEvent, Snapshot, StreamAppend, StreamArchivedData, StreamEvent, StreamOutcome,
    TraceContext, ARCHIVE_LOG_STREAM, MAX_FEED_CATEGORIES, STREAM_ARCHIVED,
};
pub use event_store::EventStore;
pub use keys::{DataKey, KeyStore};
pub use live::{LiveFeed, LiveFeedOptions, Resume};
pub use postgres::{open_read_replica, PgStore, PgStoreOptions};
pub use sqlite::{SqlitePools, SqliteStore, SqliteStoreOptions};
/// The pool type of [`PgStore::pool`] and [`open_read_replica`], for crates without sqlx.
pub use sqlx::PgPool;

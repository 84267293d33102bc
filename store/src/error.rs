//! The store's one error type. The API maps it once to the contract's codes.

use crate::event::ExpectedVersion;
use crate::live::Resume;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An expectation was not met; nothing of the append was written.
    #[error("stream {stream} expected at version {expected}, actual version {actual}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },

    /// The same (actor, key) was used before for a different request.
    #[error("idempotency key {key:?} of {actor:?} was already used for a different request")]
    IdempotencyKeyReused { actor: String, key: String },

    /// The request itself is malformed (an append without events, an empty stream id, a
    /// feed read with too many categories, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A stored event could not be lifted to its current schema.
    #[error("cannot upcast {event_type} v{schema_version}: {reason}")]
    Upcast {
        event_type: String,
        schema_version: i32,
        reason: String,
    },

    /// A stored row or snapshot holds data we cannot read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),

    /// The database cannot be used at all (start-up): the cause and the fix, in one line.
    #[error("{0}")]
    Unavailable(String),

    /// A live subscriber fell further behind than its buffer holds and was dropped, so
    /// that it slows nobody; subscribing again after `resume` continues with no gap.
    #[error("the subscriber fell too far behind the live feed; resume after {resume}")]
    SubscriberTooSlow { resume: Resume },

    /// The live feed cannot read on (for example an event it cannot upcast); its
    /// subscribers end with this.
    #[error("the live feed cannot read on: {0}")]
    LiveFeedFailed(String),

    #[error("database error")]
    Database(#[from] sqlx::Error),

    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Worth retrying as is: a dropped connection, a serialisation failure, a full pool.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => matches!(
                    db.code().as_deref(),
                    // serialization_failure, deadlock_detected, admin_shutdown, SQLite BUSY / LOCKED
                    Some("40001") | Some("40P01") | Some("57P01") | Some("5") | Some("6") | Some("517")
                ),
                _ => false,
            },
            _ => false,
        }
    }
}

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

    /// The stream was archived: its events left the hot table, it can never be appended to
    /// again and its version is never reused. Reading it answers this too.
    #[error("stream {stream} was archived at version {version}")]
    StreamArchived { stream: String, version: u64 },

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
            StoreError::Database(e) => is_transient_sqlx(e),
            _ => false,
        }
    }
}

/// A database error that goes away by itself: the connection or the server is away for a
/// moment (a restart, a failover, a full pool), or a transaction lost a race it can retry.
/// Shared by every layer that runs SQL, so that they agree on what "try again" means.
pub fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            // serialization_failure (also a replica's recovery conflict), deadlock_detected,
            // admin/crash shutdown, cannot connect now, connection exceptions (08xxx),
            // lock_not_available (archiving's lock_timeout: appends held it longer);
            // SQLite BUSY, LOCKED, BUSY_SNAPSHOT.
            matches!(code, "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "5" | "6" | "517") || code.starts_with("08")
        }
        _ => false,
    }
}

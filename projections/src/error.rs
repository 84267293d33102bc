//! The read side's one error type. The API maps it once: `BadCursor` to BAD_USER_INPUT,
//! `UnknownProjection` to NOT_FOUND, everything else to an opaque internal error.

use store::{Position, StoreError};

use commands::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A pagination cursor that this crate did not hand out (or for another list).
    #[error("malformed cursor")]
    BadCursor,

    #[error("unknown projection {0:?}")]
    UnknownProjection(String),

    /// Reactors and the publisher act on the outside world: replaying them is not a rebuild.
    #[error("{0} is not a read model and cannot be rebuilt")]
    NotRebuildable(String),

    /// An event this projection cannot apply, whatever the retries: the projection stops
    /// (FAILED) at that position until an operator resumes it.
    #[error("cannot apply event {event_type} at position {position}: {reason}")]
    Event {
        position: Position,
        event_type: String,
        reason: String,
    },

    /// Another process became the leader of this worker (its fencing token moved on).
    #[error("no longer the leader of {0}")]
    Deposed(String),

    /// A stored read-model row we cannot read back.
    #[error("corrupt read-model row: {0}")]
    Corrupt(String),

    #[error("event store: {0}")]
    Store(#[from] StoreError),

    #[error("read-model database: {0}")]
    Database(#[from] sqlx::Error),

    #[error("command: {0}")]
    Command(#[from] CommandError),

    /// Workers that ended FAILED (run until caught up): name, position and error of each.
    #[error("failed: {0}")]
    Failed(String),

    /// A worker led by another process did not catch up in time (run until caught up).
    #[error("{0} did not catch up in time")]
    NotCaughtUp(String),

    /// The event bus (NATS JetStream) refused or did not answer.
    #[error("event bus: {0}")]
    Bus(String),
}

impl ProjectionError {
    /// Worth retrying as is, after a pause: a dropped connection, a full pool, a
    /// serialisation failure, a busy SQLite file, a command that met too many concurrent
    /// writers, an unreachable event bus.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Store(e) => e.is_transient(),
            ProjectionError::Database(e) => store::error::is_transient_sqlx(e),
            ProjectionError::Command(CommandError::Store(e)) => e.is_transient(),
            ProjectionError::Command(CommandError::Timeout) => true,
            ProjectionError::Bus(_) => true,
            _ => false,
        }
    }
}

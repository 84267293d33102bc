//! Who issues a command and what it produced.

use std::time::Duration;

use store::{IdempotencyKey, Metadata, Position, TraceContext};
use uuid::Uuid;

/// How long a command may keep retrying after conflicts when its caller gives no budget
/// (reactors, seeding). The API passes its own, a bit shorter than the HTTP timeout.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(5);

/// Who issues a command and why, carried into every event's metadata.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    /// A customer id, an admin id or a worker's name.
    pub actor: String,
    pub correlation_id: Option<Uuid>,
    /// The event that caused this command (reactors).
    pub causation_id: Option<Uuid>,
    /// With a key, a repeated command returns the first outcome and appends nothing.
    pub idempotency_key: Option<String>,
    /// What the command was, to tell an honest retry from a reused key.
    pub fingerprint: String,
    /// Retries after conflicts stop when this runs out: the command answers
    /// [`crate::CommandError::Timeout`]. [`DEFAULT_BUDGET`] when absent.
    pub budget: Option<Duration>,
    /// The distributed trace the command arrived in. Its events record the span the command
    /// is issued in instead, when spans are exported (see [`crate::trace::current`]).
    pub trace: Option<TraceContext>,
}

impl CommandContext {
    pub(crate) fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            actor: self.actor.clone(),
            idempotency_key: self.idempotency_key.clone(),
            trace: self.trace.clone(),
        }
    }

    /// The context with the trace its events record, resolved where the command is issued
    /// (in the caller's span: a mailbox applies it in a task of its own).
    pub(crate) fn traced(&self) -> CommandContext {
        CommandContext {
            trace: crate::trace::current(self.trace.as_ref()),
            ..self.clone()
        }
    }

    pub(crate) fn idempotency(&self) -> Option<IdempotencyKey> {
        self.idempotency_key.as_ref().map(|key| IdempotencyKey {
            actor: self.actor.clone(),
            key: key.clone(),
            fingerprint: self.fingerprint.clone(),
        })
    }

    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.budget.unwrap_or(DEFAULT_BUDGET)
    }
}

/// The state right after a command, with the version and the position of the last
/// event it appended (for a command that appended nothing, of the stream's last event).
#[derive(Clone, Debug, PartialEq)]
pub struct Executed<S> {
    pub state: S,
    pub version: u64,
    pub position: Position,
    /// True when an earlier call with the same idempotency key is being answered.
    pub replayed: bool,
}

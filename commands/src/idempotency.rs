//! Idempotency keys: a repeated key answers with the first call's outcome and appends
//! nothing. The store keeps the outcome next to the events (same transaction) and
//! arbitrates concurrent repeats; this module only reads it back.

use store::{AppendOutcome, EventStore};

use crate::aggregate::{load_until, Aggregate};
use crate::context::{CommandContext, Executed};
use crate::error::CommandError;

/// The stored outcome of this command's key, if it was used before for the same request.
pub(crate) async fn stored_outcome(store: &dyn EventStore, ctx: &CommandContext) -> Result<Option<AppendOutcome>, CommandError> {
    let Some(key) = &ctx.idempotency_key else { return Ok(None) };
    match store.idempotent_outcome(&ctx.actor, key).await? {
        Some((fingerprint, _)) if fingerprint != ctx.fingerprint => Err(CommandError::IdempotencyKeyReused),
        found => Ok(found.map(|(_, outcome)| outcome)),
    }
}

/// The state as the first call left it: the stream folded up to the version it produced.
pub(crate) async fn replayed<A: Aggregate>(
    store: &dyn EventStore,
    stream_id: &str,
    outcome: &AppendOutcome,
) -> Result<Executed<A::State>, CommandError> {
    let Some(written) = outcome.stream(stream_id) else {
        // The key was first used for a command on another stream.
        return Err(CommandError::IdempotencyKeyReused);
    };
    let until = written.last_version;
    let loaded = load_until::<A>(store, stream_id, |e| e.version <= until).await?;
    Ok(Executed {
        state: loaded.state,
        version: loaded.version,
        position: outcome.last_position(),
        replayed: true,
    })
}

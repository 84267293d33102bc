//! What a command can end in, besides its outcome. The API maps each variant to one of
//! the contract's codes (api/src/error.rs).

use std::sync::Arc;

use domain::DomainError;
use store::StoreError;
use vault::VaultError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The stream does not exist for this actor (absent, or someone else's cart).
    #[error("{0} not found")]
    NotFound(String),
    /// The client's expected version is not the stream's (checked against the store,
    /// never against a possibly stale cache).
    #[error("expected version {expected}, actual version {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error("this idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// The command's deadline passed before it could be appended (the only way a
    /// command without an expected version ends unanswered under contention).
    #[error("the command did not complete within its deadline; try again")]
    Timeout,
    /// Shared: one failed group append answers every command of the group.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// Sealing or opening personal data failed (a configuration error or a bug).
    #[error(transparent)]
    Vault(Arc<VaultError>),
}

impl From<VaultError> for CommandError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Store(e) => e.into(),
            other => CommandError::Vault(Arc::new(other)),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyKeyReused { .. } => CommandError::IdempotencyKeyReused,
            other => CommandError::Store(Arc::new(other)),
        }
    }
}

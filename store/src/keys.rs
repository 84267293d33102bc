//! Data keys for crypto-shredding: one per subject (a customer), kept *wrapped* (sealed by
//! a master key the store never sees), deleted to erase everything sealed with it.
//!
//! The store only keeps the bytes and makes deletion atomic with the event that records it
//! ([`KeyStore::shred`]); sealing, opening and wrapping are the `vault` crate's. The SQL is
//! beside each backend (`postgres/keys.rs`, `sqlite/keys.rs`), the table in migration 0005.

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::{AppendOutcome, AppendRequest};

/// A subject's data key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    pub subject: String,
    /// Sealed into every ciphertext made with the key: a key made after an erasure has
    /// another id and cannot be mistaken for the erased one.
    pub key_id: Uuid,
    /// The key sealed by the master key.
    pub wrapped: Vec<u8>,
    /// The fingerprint of the master key that wrapped it.
    pub master_key: String,
}

/// No key material in logs, not even wrapped.
impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("subject", &self.subject)
            .field("key_id", &self.key_id)
            .field("master_key", &self.master_key)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The subject's key, `None` if it never had one or it was shredded.
    async fn data_key(&self, subject: &str) -> Result<Option<DataKey>, StoreError>;

    /// The keys of several subjects at once (those that have one), for a page of objects.
    async fn data_keys(&self, subjects: &[String]) -> Result<Vec<DataKey>, StoreError>;

    /// Stores `key` unless the subject holds a key already; answers the key the subject
    /// holds afterwards (the first of two racing inserts wins, both callers get it).
    async fn insert_data_key(&self, key: DataKey) -> Result<DataKey, StoreError>;

    /// Deletes the subject's key and appends `request`, in one transaction: both or
    /// neither. Whatever the key sealed can never be opened again.
    async fn shred(&self, subject: &str, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// Up to `limit` keys wrapped by a master key other than `master_key`, for rotation.
    async fn keys_not_wrapped_by(&self, master_key: &str, limit: usize) -> Result<Vec<DataKey>, StoreError>;

    /// Replaces the wrapping of `key.key_id` with `key.wrapped` and `key.master_key`, if the
    /// key still exists; `false` when it was shredded meanwhile.
    async fn rewrap(&self, key: &DataKey) -> Result<bool, StoreError>;
}

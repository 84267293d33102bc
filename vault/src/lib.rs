//! Crypto-shredding: how cartsource erases personal data from a log it never rewrites.
//!
//! Sits between `store` (which keeps data keys as bytes, [`store::KeyStore`]) and the
//! layers that handle personal data in the clear: `api` seals what a customer types and
//! opens it when asked; the notification reactor in `projections` opens the email it
//! writes to; `commands` shreds. Nothing else ever sees plaintext: events, snapshots,
//! idempotency outcomes, read-model rows and bus messages carry only [`SealedPersonalData`].
//!
//! * Each customer gets a random 256-bit **data key** the first time something personal is
//!   sealed for them. The store keeps it wrapped (AES-256-GCM) by the **master key** from
//!   configuration, bound to the customer and the key's id.
//! * Personal data is sealed with AES-256-GCM under the data key, with a random 96-bit
//!   nonce, bound to the customer and the key id (associated data), as the text
//!   `v1.<key id>.<base64url(nonce || ciphertext || tag)>`.
//! * **Erasure** deletes the data key (with the event recording it, `KeyStore::shred`).
//!   Every ciphertext it sealed, wherever it was copied, is noise from then on: [`Vault::open`]
//!   answers [`Opened::Erased`]. A key made later for the same customer has another id, so
//!   it never opens what the erased one sealed.
//! * **Master key rotation**: configure the new key and keep the old one as a previous key;
//!   [`Vault::rotate`] re-wraps every data key with the new one, after which the old one
//!   can go. Data keys and ciphertexts do not change.

use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{CustomerId, PersonalData, SealedPersonalData};
use sha2::{Digest, Sha256};
use store::{DataKey, KeyStore, StoreError};
use uuid::Uuid;

const NONCE_LEN: usize = 12;
const SEALED_PREFIX: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured master key is not 32 bytes written as 64 hex digits.
    #[error("the master key must be 64 hex digits (32 bytes): {0}")]
    BadMasterKey(String),
    /// A data key is wrapped by a master key this process was not given (rotation needs
    /// the old key as a previous key until `rotate` has run).
    #[error("the data key of {subject:?} is wrapped by master key {fingerprint}, which is not configured")]
    UnknownMasterKey { subject: String, fingerprint: String },
    /// A ciphertext or wrapped key that does not authenticate: tampering or a bug, never
    /// an erasure (an erased key is simply absent).
    #[error("{0}")]
    Corrupt(String),
}

/// The key that wraps data keys. Never printed; known by its fingerprint.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl MasterKey {
    /// From 64 hex digits (surrounding whitespace ignored), as in `--master-key-file`.
    pub fn from_hex(text: &str) -> Result<Self, VaultError> {
        let bytes = hex::decode(text.trim()).map_err(|e| VaultError::BadMasterKey(e.to_string()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| VaultError::BadMasterKey(format!("got {} bytes", b.len())))?;
        let digest = Sha256::new().chain_update(b"cartsource master key\0").chain_update(key).finalize();
        Ok(MasterKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            fingerprint: hex::encode(&digest[..8]),
        })
    }

    /// A fresh random key as 64 hex digits (what development generates).
    pub fn generate_hex() -> String {
        hex::encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Identifies the key in the data-key table and in messages; reveals nothing of it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint)
    }
}

/// What [`Vault::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    Data(PersonalData),
    /// The key it was sealed with is gone: the customer erased their personal data.
    Erased,
}

/// Seals and opens personal data. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    keys: Arc<dyn KeyStore>,
    master: Arc<MasterKey>,
    previous: Arc<Vec<MasterKey>>,
}

impl Vault {
    /// `previous`: master keys being rotated away from, still accepted for unwrapping.
    pub fn new(keys: Arc<dyn KeyStore>, master: MasterKey, previous: Vec<MasterKey>) -> Self {
        Vault {
            keys,
            master: Arc::new(master),
            previous: Arc::new(previous),
        }
    }

    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// Seals `data` for `customer`, making their data key if they have none.
    pub async fn seal(&self, customer: &CustomerId, data: &PersonalData) -> Result<SealedPersonalData, VaultError> {
        let subject = customer.as_str();
        let stored = match self.keys.data_key(subject).await? {
            Some(key) => key,
            None => self.keys.insert_data_key(self.new_data_key(subject)?).await?,
        };
        let cipher = self.unwrap(&stored)?;
        let plaintext = serde_json::to_vec(data).map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let sealed = encrypt(&cipher, &plaintext, &data_aad(subject, stored.key_id)).ok_or_else(|| VaultError::Corrupt("sealing failed".into()))?;
        Ok(SealedPersonalData::new(format!(
            "{SEALED_PREFIX}.{}.{}",
            stored.key_id.simple(),
            URL_SAFE_NO_PAD.encode(sealed)
        )))
    }

    /// Opens what [`Vault::seal`] sealed for `customer`: [`Opened::Erased`] once their key
    /// (that key, not a later one) is gone.
    pub async fn open(&self, customer: &CustomerId, sealed: &SealedPersonalData) -> Result<Opened, VaultError> {
        let stored = self.keys.data_key(customer.as_str()).await?;
        self.open_with(customer, sealed, stored.as_ref())
    }

    /// The stored keys of several customers in one read (`open_with` then opens each):
    /// for a page of orders, one lookup instead of one per order.
    pub async fn data_keys(&self, customers: &[String]) -> Result<Vec<DataKey>, VaultError> {
        Ok(self.keys.data_keys(customers).await?)
    }

    /// [`Vault::open`] with the customer's stored key already read (`None`: they have none).
    pub fn open_with(&self, customer: &CustomerId, sealed: &SealedPersonalData, stored: Option<&DataKey>) -> Result<Opened, VaultError> {
        let corrupt = |what: &str| VaultError::Corrupt(format!("sealed personal data of {customer:?}: {what}"));
        let mut parts = sealed.as_str().splitn(3, '.');
        let (Some(SEALED_PREFIX), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(corrupt("not in the v1 format"));
        };
        let key_id = Uuid::parse_str(key_id).map_err(|_| corrupt("bad key id"))?;
        let stored = match stored {
            Some(stored) if stored.key_id == key_id && stored.subject == customer.as_str() => stored,
            _ => return Ok(Opened::Erased),
        };
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| corrupt("bad base64"))?;
        let plaintext = decrypt(&self.unwrap(stored)?, &body, &data_aad(customer.as_str(), key_id)).map_err(corrupt)?;
        let data = serde_json::from_slice(&plaintext).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Opened::Data(data))
    }

    /// Whether personal data was sealed for `customer` since their last erasure.
    pub async fn holds_key(&self, customer: &CustomerId) -> Result<bool, VaultError> {
        Ok(self.keys.data_key(customer.as_str()).await?.is_some())
    }

    /// Re-wraps, `batch` at a time, every data key wrapped by a previous master key with the
    /// current one; answers how many it re-wrapped. Safe to run while serving and to repeat.
    pub async fn rotate(&self, batch: usize) -> Result<usize, VaultError> {
        let mut done = 0;
        loop {
            let keys = self.keys.keys_not_wrapped_by(self.master.fingerprint(), batch.max(1)).await?;
            if keys.is_empty() {
                return Ok(done);
            }
            for key in keys {
                let data_key = self.unwrap_bytes(&key)?;
                let rewrapped = DataKey {
                    wrapped: self.wrap(&key.subject, key.key_id, &data_key)?,
                    master_key: self.master.fingerprint().to_owned(),
                    ..key
                };
                if self.keys.rewrap(&rewrapped).await? {
                    done += 1;
                }
            }
        }
    }

    fn new_data_key(&self, subject: &str) -> Result<DataKey, VaultError> {
        let key_id = Uuid::new_v4();
        let data_key = Aes256Gcm::generate_key(OsRng);
        Ok(DataKey {
            subject: subject.to_owned(),
            key_id,
            wrapped: self.wrap(subject, key_id, &data_key)?,
            master_key: self.master.fingerprint().to_owned(),
        })
    }

    fn wrap(&self, subject: &str, key_id: Uuid, data_key: &[u8]) -> Result<Vec<u8>, VaultError> {
        encrypt(&self.master.cipher, data_key, &key_aad(subject, key_id)).ok_or_else(|| VaultError::Corrupt("wrapping failed".into()))
    }

    fn unwrap(&self, stored: &DataKey) -> Result<Aes256Gcm, VaultError> {
        let bytes = self.unwrap_bytes(stored)?;
        Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    fn unwrap_bytes(&self, stored: &DataKey) -> Result<Vec<u8>, VaultError> {
        let master = std::iter::once(self.master.as_ref())
            .chain(self.previous.iter())
            .find(|m| m.fingerprint == stored.master_key)
            .ok_or_else(|| VaultError::UnknownMasterKey {
                subject: stored.subject.clone(),
                fingerprint: stored.master_key.clone(),
            })?;
        let corrupt = || VaultError::Corrupt(format!("the data key of {:?} does not unwrap", stored.subject));
        let bytes = decrypt(&master.cipher, &stored.wrapped, &key_aad(&stored.subject, stored.key_id)).map_err(|_| corrupt())?;
        if bytes.len() != 32 {
            return Err(corrupt());
        }
        Ok(bytes)
    }
}

/// AES-256-GCM under a fresh random nonce, as `nonce || ciphertext || tag`: the form of
/// both a sealed text's body and a wrapped data key.
fn encrypt(cipher: &Aes256Gcm, msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let nonce = Aes256Gcm::generate_nonce(OsRng);
    let ciphertext = cipher.encrypt(&nonce, Payload { msg, aad }).ok()?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Some(sealed)
}

/// The inverse of [`encrypt`]; the error says why it failed.
fn decrypt(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, &'static str> {
    if sealed.len() < NONCE_LEN {
        return Err("too short");
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| "does not authenticate")
}

/// Binds a ciphertext to its customer and key: moving it to another customer's order, or
/// opening it with another key, fails to authenticate.
fn data_aad(subject: &str, key_id: Uuid) -> Vec<u8> {
    format!("cartsource:personal-data:v1:{key_id}:{subject}").into_bytes()
}

fn key_aad(subject: &str, key_id: Uuid) -> Vec<u8> {
    format!("cartsource:data-key:v1:{key_id}:{subject}").into_bytes()
}

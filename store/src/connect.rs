//! Opening a store from a URL: `postgres://...` or `sqlite:...`. Migrations run on open.

use std::sync::Arc;

use crate::error::StoreError;
use crate::event_store::EventStore;
use crate::keys::KeyStore;
use crate::postgres::{PgStore, PgStoreOptions};
use crate::sqlite::SqliteStore;

/// An opened store with its concrete backend: the read side keeps its tables in the same
/// database and commits read-model changes with its checkpoints in one transaction, so it
/// needs the pool, not just the `EventStore` contract.
#[derive(Clone)]
pub enum Database {
    Postgres(Arc<PgStore>),
    Sqlite(Arc<SqliteStore>),
}

impl Database {
    /// The backend behind the one contract.
    pub fn store(&self) -> Arc<dyn EventStore> {
        match self {
            Database::Postgres(store) => store.clone(),
            Database::Sqlite(store) => store.clone(),
        }
    }

    /// The data keys of crypto-shredding, kept in the same database as the events so that
    /// deleting one commits with the event recording it.
    pub fn keys(&self) -> Arc<dyn KeyStore> {
        match self {
            Database::Postgres(store) => store.clone(),
            Database::Sqlite(store) => store.clone(),
        }
    }
}

/// Opens the database named by `url` and applies its migrations.
pub async fn open(url: &str) -> Result<Database, StoreError> {
    open_with(url, PgStoreOptions::default()).await
}

/// [`open`] with the Postgres pool's sizes and timeouts (SQLite ignores them); it says why
/// within `options.connect_timeout` when PostgreSQL cannot be used.
pub async fn open_with(url: &str, options: PgStoreOptions) -> Result<Database, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Database::Postgres(Arc::new(PgStore::connect_with(url, options).await?)))
    } else if url.starts_with("sqlite:") {
        Ok(Database::Sqlite(Arc::new(SqliteStore::connect(url).await?)))
    } else {
        Err(StoreError::InvalidRequest(format!(
            "unsupported database URL scheme in {:?}: use postgres://... or sqlite:...",
            redact(url)
        )))
    }
}

/// Opens the store named by `url` and applies its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    Ok(open(url).await?.store())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://***{}", &url[..scheme_end], &url[at..]),
        _ => url.to_owned(),
    }
}

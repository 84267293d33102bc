//! The optional read replica: a PostgreSQL streaming standby (or any read-only copy) of the
//! store's database that the read-model queries go to (`projections::ReadModels`).
//!
//! It is only a pool: no migrations (a standby cannot run them; it receives the primary's),
//! no listener or notifier (the feed and the doorbell stay on the primary), and every session
//! is read-only (`default_transaction_read_only`), so a URL that points at a primary by
//! mistake cannot be written through.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};

use super::{pool_options, PgStoreOptions};
use crate::error::StoreError;

/// The table whose presence says the replica has the store's schema (it holds the
/// projections' checkpoints, which read-your-writes reads on the replica).
const SCHEMA_PROBE: &str = "select to_regclass('projection_checkpoints') is not null";

/// Connects to the replica at `url` with the pool sizes of `options`; says why within
/// `options.connect_timeout` when it cannot be used. Waits (within the same bound) for the
/// store's schema to arrive: on a first start the primary has just migrated and the standby
/// may not have replayed it yet.
pub async fn open_read_replica(url: &str, options: &PgStoreOptions) -> Result<PgPool, StoreError> {
    let connect_options: PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Unavailable(format!("READ_DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
    crate::startup::check_postgres(&connect_options, options.connect_timeout, "READ_DATABASE_URL").await?;
    let connect_options = connect_options.options([("default_transaction_read_only", "on"), super::GENERIC_PLANS]);
    let pool = pool_options(options).connect_with(connect_options).await?;
    let deadline = Instant::now() + options.connect_timeout;
    loop {
        if sqlx::query_scalar::<_, bool>(SCHEMA_PROBE).fetch_one(&pool).await? {
            return Ok(pool);
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "the read replica at {} has no cartsource tables after {} s: READ_DATABASE_URL must name a replica of DATABASE_URL's database",
                crate::connect::redact(url),
                options.connect_timeout.as_secs_f32()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

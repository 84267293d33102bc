//! What opening the store does to the database before anything is written: apply the
//! migrations, and refuse a database on which new positions would break the feed.

use sqlx::postgres::PgPool;

use super::ORDINAL_BITS;
use crate::error::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Applies the migrations, then checks the transaction counter.
pub(super) async fn migrate_and_check(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| crate::startup::migration_failed(pool.connect_options().as_ref(), e))?;
    check_xid_counter(pool).await
}

/// Refuses a database whose xid counter is behind its stored positions (a logical dump
/// restored into a new cluster): new positions would land behind the ones readers passed.
async fn check_xid_counter(pool: &PgPool) -> Result<(), StoreError> {
    let (newest_xid, next_xid): (i64, i64) = sqlx::query_as(&format!(
        "select coalesce(max(position), 0) >> {ORDINAL_BITS}, pg_snapshot_xmax(pg_current_snapshot())::text::bigint from events"
    ))
    .fetch_one(pool)
    .await?;
    if newest_xid >= next_xid {
        return Err(StoreError::Corrupt(format!(
            "stored events were written by transaction {newest_xid} but this server's next transaction id is {next_xid}: \
             the database was restored into another cluster without its transaction counter; advance it (pg_resetwal -x) \
             past {newest_xid} before writing, or new events would be positioned behind old ones"
        )));
    }
    Ok(())
}

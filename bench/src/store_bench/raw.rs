//! The raw-SQL baseline: plain single-row INSERTs in autocommit with a client-side position
//! and no checks, and plain SELECTs decoded into the same Rust types.

use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::postgres::PgPool;
use sqlx::Row;
use store::{NewEvent, StoreError};
use uuid::Uuid;

use super::BoxError;

/// The baseline write: one row, autocommit, no checks.
pub(super) async fn raw_insert(pool: &PgPool, position: &AtomicI64, event: &NewEvent) -> Result<(), StoreError> {
    let position = position.fetch_add(1, Ordering::Relaxed) + 1;
    let stream_id = format!("cart-{}", Uuid::new_v4());
    sqlx::query(
        "insert into raw_events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(position)
    .bind(event.event_id)
    .bind(&stream_id)
    .bind("cart")
    .bind(1i64)
    .bind(&event.event_type)
    .bind(event.schema_version)
    .bind(&event.data)
    .bind(sqlx::types::Json(&event.metadata))
    .execute(pool)
    .await?;
    Ok(())
}

/// The same batch as one plain multi-row INSERT, for scale.
pub(super) async fn raw_insert_batch(pool: &PgPool, position: &AtomicI64, events: &[NewEvent]) -> Result<(), StoreError> {
    let first = position.fetch_add(events.len() as i64, Ordering::Relaxed) + 1;
    let stream_id = format!("order-{}", Uuid::new_v4());
    let mut sql =
        String::from("insert into raw_events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata) values ");
    for i in 0..events.len() {
        let p = i * 9;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8,
            p + 9
        ));
    }
    let mut query = sqlx::query(&sql);
    for (i, event) in events.iter().enumerate() {
        query = query
            .bind(first + i as i64)
            .bind(event.event_id)
            .bind(&stream_id)
            .bind("order")
            .bind(i as i64 + 1)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.data)
            .bind(sqlx::types::Json(&event.metadata));
    }
    query.execute(pool).await?;
    Ok(())
}

const RAW_COLUMNS: &str = "position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at";

/// One baseline row decoded into the types a reader needs.
type RawRow = (
    i64,
    String,
    i64,
    Uuid,
    String,
    i32,
    serde_json::Value,
    serde_json::Value,
    time::OffsetDateTime,
);

fn decode_raw(row: &sqlx::postgres::PgRow) -> Result<RawRow, sqlx::Error> {
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
        row.try_get(7)?,
        row.try_get(8)?,
    ))
}

pub(super) async fn raw_stream(pool: &PgPool, stream_id: &str) -> Result<usize, BoxError> {
    let rows = sqlx::query(&format!("select {RAW_COLUMNS} from raw_events where stream_id = $1 order by version"))
        .bind(stream_id)
        .fetch_all(pool)
        .await?;
    let decoded = rows.iter().map(decode_raw).collect::<Result<Vec<_>, _>>()?;
    Ok(decoded.len())
}

pub(super) async fn raw_feed(pool: &PgPool, page: usize) -> Result<usize, BoxError> {
    let sql = format!("select {RAW_COLUMNS} from raw_events where position > $1 order by position limit $2");
    let mut after = 0i64;
    let mut read = 0;
    loop {
        let rows = sqlx::query(&sql).bind(after).bind(page as i64).fetch_all(pool).await?;
        let decoded = rows.iter().map(decode_raw).collect::<Result<Vec<_>, _>>()?;
        let Some(last) = decoded.last() else { break };
        after = last.0;
        read += decoded.len();
    }
    Ok(read)
}

//! The minimal Postgres baseline of issue #11: a six-column table, tokio-postgres (the
//! leaner client: no pool, binary rows, statements prepared once per connection), one
//! connection per writer, no checks beyond the table's unique key.
//!
//! W1 is one INSERT per append; W2 one `INSERT ... SELECT FROM unnest(arrays)` per 10-event
//! append (versions after the expected one; the unique key turns a stale expectation into
//! an error); W3 one SELECT by stream ordered by version; W4 pages of 1,000 by position.
//! Rows decode `data` straight from the jsonb bytes into the typed event.

use std::sync::Arc;

use domain::{CartEvent, Event};
use futures::TryStreamExt;
use serde_json::Value;
use store::NewEvent;
use time::OffsetDateTime;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use super::BoxError;

/// The table exactly as the issue defines it.
pub(super) const TABLE: &str = "create table raw_events (global_position bigserial primary key, stream_id text, version bigint, \
     type text, data jsonb, created_at timestamptz default now(), unique (stream_id, version))";

const INSERT_ONE: &str = "insert into raw_events (stream_id, version, type, data) values ($1, $2, $3, $4)";
const INSERT_MANY: &str = "insert into raw_events (stream_id, version, type, data)
     select $1, $2 + e.ordinal, e.type, e.data from unnest($3::text[], $4::jsonb[]) with ordinality as e(type, data, ordinal)";
const BY_STREAM: &str = "select global_position, version, type, data from raw_events where stream_id = $1 order by version";
const PAGE: &str =
    "select global_position, stream_id, version, type, data, created_at from raw_events where global_position > $1 order by global_position limit $2";

/// One connection and its prepared statements.
pub(super) struct Conn {
    client: Client,
    insert_one: Statement,
    insert_many: Statement,
    by_stream: Statement,
    page: Statement,
    /// Not the baseline's: the store's own statement for a new stream's event
    /// (`store::postgres::NEW_STREAM_APPEND_SQL`), to measure it without the store's code.
    store_append: Statement,
}

/// `n` connections, one per writer.
pub(super) async fn connect(url: &str, n: usize) -> Result<Arc<Vec<Conn>>, BoxError> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("baseline connection: {e}");
            }
        });
        conns.push(Conn {
            insert_one: client.prepare(INSERT_ONE).await?,
            insert_many: client.prepare(INSERT_MANY).await?,
            by_stream: client.prepare(BY_STREAM).await?,
            page: client.prepare(PAGE).await?,
            store_append: client.prepare(store::postgres::NEW_STREAM_APPEND_SQL).await?,
            client,
        });
    }
    Ok(Arc::new(conns))
}

impl Conn {
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// W1: one event as version 1 of a new stream.
    pub(super) async fn insert_one(&self, stream_id: &str, event_type: &str, data: &Value) -> Result<u64, BoxError> {
        Ok(self.client.execute(&self.insert_one, &[&stream_id, &1i64, &event_type, data]).await?)
    }

    /// The store's statement for one event to a new stream, its parameters bound as
    /// `PgStore` binds them (data and metadata as JSON text, a fresh event id); one row back.
    pub(super) async fn store_append(&self, stream_id: &str, event: &NewEvent) -> Result<u64, BoxError> {
        let (data, metadata) = (event.data.get(), serde_json::to_string(&event.metadata)?);
        let params: [&(dyn ToSql + Sync); 9] = [
            &stream_id,
            &"cart",
            &0i64,
            &Uuid::now_v7(),
            &event.event_type,
            &event.schema_version,
            &data,
            &metadata,
            &0i64,
        ];
        match self.client.query(&self.store_append, &params).await?.len() {
            1 => Ok(1),
            n => Err(format!("the store's statement returned {n} rows for one event").into()),
        }
    }

    /// W2: events after version `expected` of a stream, in one statement.
    pub(super) async fn insert_many(&self, stream_id: &str, expected: i64, types: &[&str], data: &[Value]) -> Result<u64, BoxError> {
        Ok(self.client.execute(&self.insert_many, &[&stream_id, &expected, &types, &data]).await?)
    }

    /// W3: a stream's events, decoded into typed events as their rows arrive (as the store's
    /// stream pages are).
    pub(super) async fn load(&self, stream_id: &str) -> Result<Vec<(i64, i64, CartEvent)>, BoxError> {
        let rows = self.client.query_raw(&self.by_stream, [stream_id]).await?;
        futures::pin_mut!(rows);
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let data: JsonbBytes = row.try_get(3)?;
            events.push((row.try_get(0)?, row.try_get(1)?, typed(row.try_get(2)?, data.0)?));
        }
        Ok(events)
    }

    /// W4: the page after `after`; the positions, the rows decoded. Each row is decoded as it
    /// arrives (as the store's feed does), while the rest of the page is still coming.
    pub(super) async fn page(&self, after: i64, limit: i64) -> Result<Vec<i64>, BoxError> {
        let rows = self.client.query_raw(&self.page, [after, limit]).await?;
        futures::pin_mut!(rows);
        let mut positions = Vec::with_capacity(usize::try_from(limit).unwrap_or_default());
        while let Some(row) = rows.try_next().await? {
            let data: JsonbBytes = row.try_get(4)?;
            let decoded: (i64, &str, i64, CartEvent, OffsetDateTime) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                typed(row.try_get(3)?, data.0)?,
                row.try_get(5)?,
            );
            positions.push(decoded.0);
        }
        Ok(positions)
    }
}

/// The W3 query and decoding through sqlx instead (to choose the client): `data` read as
/// the same jsonb bytes, each row decoded as it arrives.
pub(super) async fn load_with_sqlx(pool: &sqlx::PgPool, stream_id: &str) -> Result<usize, BoxError> {
    use sqlx::{Row, ValueRef};
    let mut rows = sqlx::query(BY_STREAM).bind(stream_id).fetch(pool);
    let mut loaded = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let raw = row.try_get_raw(3)?;
        let data = match raw.as_bytes()?.split_first() {
            Some((1, json)) if !raw.is_null() => json,
            _ => return Err("unsupported jsonb format version".into()),
        };
        let event: CartEvent = typed(row.try_get(2)?, data)?;
        loaded.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?, event));
    }
    Ok(loaded.len())
}

/// The text of a jsonb value as sent in binary format (a version byte, then JSON text).
struct JsonbBytes<'a>(&'a [u8]);

impl<'a> FromSql<'a> for JsonbBytes<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match raw.split_first() {
            Some((1, json)) => Ok(JsonbBytes(json)),
            _ => Err("unsupported jsonb format version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

/// Decodes an event's `data` (JSON text) straight into the typed event, the way the domain
/// decodes what the store reads (`Event::from_json`: one pass, no intermediate
/// `serde_json::Value`).
pub(super) fn typed<E: Event>(event_type: &str, data: &[u8]) -> Result<E, BoxError> {
    Ok(E::from_json(event_type, std::str::from_utf8(data)?)?)
}

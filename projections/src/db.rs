//! Backend plumbing shared by the read models, the checkpoints and the queries.
//!
//! Each statement is written twice, once per backend ([`Sql`]), because the types differ
//! (uuid/timestamptz/jsonb against TEXT); the Rust side is written once. Rows travel as
//! JSON in both directions: a query returns one JSON object per row (`json_build_object` /
//! `json_object`) decoded with serde into the one row struct, and a batch write binds one
//! JSON array that the statement unpacks (`jsonb_to_recordset` / `json_each`), so a batch of
//! any size is one multi-row statement per table.
//!
//! Looking rows up by a batch's ids on Postgres: each id goes through the primary key on its
//! own, `from jsonb_array_elements_text($2::jsonb) k(id) cross join lateral (select ... where
//! generation = $1 and id = k.id ... limit 1 / offset 0)` (the `limit`/`offset` keeps the
//! planner from flattening it into a join). With the plainer `id = any(array(...))`, rows were
//! compared with every id of the batch: a profile of a carts rebuild showed
//! `ExecEvalScalarArrayOp` and `uuid_eq` as Postgres's top functions, and each batch got
//! slower as the new generation grew.

use serde::de::DeserializeOwned;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, Transaction};
use store::{Database, Position};
use time::format_description::well_known::Rfc3339;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::error::ProjectionError;

/// One statement in each backend's dialect. Both use `$1, $2, ...` (sqlx binds SQLite's `$N`
/// by number too).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sql {
    pub pg: &'static str,
    pub lite: &'static str,
}

/// A bound parameter. JSON travels as text (`$n::jsonb` on Postgres).
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

/// A connection of either backend, inside or outside a transaction.
pub(crate) enum Conn<'c> {
    Pg(&'c mut PgConnection),
    Lite(&'c mut SqliteConnection),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::OptInt(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.clone()),
                Arg::OptText(v) => query.bind(v.clone()),
            };
        }
        query
    }};
}

impl Conn<'_> {
    /// Runs a statement; returns the rows it affected.
    pub async fn execute(&mut self, sql: Sql, args: &[Arg]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Pg(conn) => bind_all!(sqlx::query(sql.pg), args).execute(&mut **conn).await?.rows_affected(),
            Conn::Lite(conn) => bind_all!(sqlx::query(sql.lite), args).execute(&mut **conn).await?.rows_affected(),
        })
    }

    /// Runs a query whose only column is one JSON object (as text) per row.
    pub async fn json_rows<T: DeserializeOwned>(&mut self, sql: Sql, args: &[Arg]) -> Result<Vec<T>, ProjectionError> {
        let texts: Vec<String> = match self {
            Conn::Pg(conn) => bind_all!(sqlx::query_scalar(sql.pg), args).fetch_all(&mut **conn).await?,
            Conn::Lite(conn) => bind_all!(sqlx::query_scalar(sql.lite), args).fetch_all(&mut **conn).await?,
        };
        texts
            .iter()
            .map(|text| serde_json::from_str(text).map_err(|e| ProjectionError::Corrupt(format!("{e}: {text}"))))
            .collect()
    }

    /// Runs a query returning at most one integer.
    pub async fn optional_int(&mut self, sql: Sql, args: &[Arg]) -> Result<Option<i64>, sqlx::Error> {
        match self {
            Conn::Pg(conn) => bind_all!(sqlx::query_scalar(sql.pg), args).fetch_optional(&mut **conn).await,
            Conn::Lite(conn) => bind_all!(sqlx::query_scalar(sql.lite), args).fetch_optional(&mut **conn).await,
        }
    }
}

/// A write transaction of either backend. On SQLite it holds the one writer connection
/// (BEGIN IMMEDIATE): keep it short, and never call `EventStore::append` while holding it.
pub(crate) enum Tx {
    Pg(Transaction<'static, Postgres>),
    Lite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub async fn begin(db: &Database) -> Result<Tx, ProjectionError> {
        Ok(match db {
            Database::Postgres(store) => Tx::Pg(store.pool().begin().await?),
            Database::Sqlite(store) => Tx::Lite(store.begin().await?),
        })
    }

    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Pg(tx) => Conn::Pg(&mut *tx),
            Tx::Lite(tx) => Conn::Lite(&mut *tx),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Pg(tx) => tx.commit().await,
            Tx::Lite(tx) => tx.commit().await,
        }
    }
}

/// A pooled connection for reads (SQLite: from the read-only pool).
pub(crate) enum ReadConn {
    Pg(PoolConnection<Postgres>),
    Lite(PoolConnection<Sqlite>),
}

impl ReadConn {
    pub async fn acquire(db: &Database) -> Result<ReadConn, ProjectionError> {
        ReadConn::acquire_from(db, None).await
    }

    /// From the read replica's pool when there is one, else as [`ReadConn::acquire`].
    pub async fn acquire_from(db: &Database, replica: Option<&PgPool>) -> Result<ReadConn, ProjectionError> {
        if let Some(replica) = replica {
            return Ok(ReadConn::Pg(replica.acquire().await?));
        }
        Ok(match db {
            Database::Postgres(store) => ReadConn::Pg(store.pool().acquire().await?),
            Database::Sqlite(store) => ReadConn::Lite(store.pool().reader.acquire().await?),
        })
    }

    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            ReadConn::Pg(c) => Conn::Pg(&mut *c),
            ReadConn::Lite(c) => Conn::Lite(&mut *c),
        }
    }
}

/// A position as the databases store it (bigint). Positions never exceed i64::MAX (the
/// store's own columns are bigint), so this only clamps nonsense.
pub(crate) fn pos(position: Position) -> i64 {
    i64::try_from(position.0).unwrap_or(i64::MAX)
}

pub(crate) fn position(stored: i64) -> Position {
    Position(u64::try_from(stored).unwrap_or(0))
}

/// The one form times are written in: fixed width, UTC, microseconds (the store's form), so
/// SQLite's text compares like the instants and Postgres parses it as timestamptz.
const TIMESTAMP: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub(crate) fn format_time(at: OffsetDateTime) -> String {
    // Formatting a UTC date with these components cannot fail for years 0..=9999.
    at.to_offset(UtcOffset::UTC).format(TIMESTAMP).unwrap_or_else(|_| at.to_string())
}

/// Times inside JSON rows: written in [`format_time`]'s form, read as any RFC 3339 (Postgres
/// renders timestamptz with the session's offset).
pub(crate) mod ts {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<OffsetDateTime, String> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| t.to_offset(UtcOffset::UTC))
            .map_err(|e| format!("time {text:?} is not RFC 3339: {e}"))
    }
}

/// Serialises rows for a batch write: one JSON array bound as one parameter.
pub(crate) fn json_arg<T: serde::Serialize>(rows: &[T]) -> Result<Arg, ProjectionError> {
    serde_json::to_string(rows)
        .map(Arg::Text)
        .map_err(|e| ProjectionError::Corrupt(format!("cannot serialise rows: {e}")))
}

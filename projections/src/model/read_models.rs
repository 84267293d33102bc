//! What every read model's queries share: the [`ReadModels`] handle and its connection,
//! newest-first pages and their cursors. The queries themselves live with their model
//! (`model/<name>/query.rs`), as further `impl ReadModels` blocks.
//!
//! Every query reads the generation its projection currently serves (see the migration:
//! rebuilds fill another generation and swap). A page's lines come from ONE extra query for
//! the whole page, never one per cart or order.
//!
//! Cursors are opaque to clients: URL-safe base64 of `<list>:<key>`, where the key is the
//! position of the event that created the row (carts, orders, notifications: unique, stable,
//! and the "newest first" order) or the sku (products). A cursor of another list, or anything
//! we did not hand out, is [`ProjectionError::BadCursor`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sqlx::PgPool;
use store::Database;

use crate::checkpoint::{self, Checkpoint};
use crate::db::ReadConn;
use crate::error::ProjectionError;

/// A line of a cart or of an order as the API renders it (the two have the same shape:
/// an order's lines are the cart's, priced when it was placed).
#[derive(Clone, Debug, PartialEq)]
pub struct LineView {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    /// Minor units.
    pub unit_price: i64,
    /// Minor units.
    pub line_total: i64,
}

/// One page of a list: each item with the cursor that continues after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<(String, T)>,
    pub has_next_page: bool,
}

/// Queries over the read models. Cheap to clone.
///
/// With a read replica (Postgres only) every query, and the checkpoint rows that
/// read-your-writes waits on, are read from the replica: a checkpoint row and the rows it
/// covers are written in one transaction, so the replica shows them together, and a read
/// after the replica's row reached a position sees the read model at that position.
#[derive(Clone)]
pub struct ReadModels {
    db: Database,
    replica: Option<PgPool>,
}

/// The generation a projection serves, as a subquery (a macro, so `concat!` can build
/// statements from it).
macro_rules! serving {
    ($name:literal) => {
        concat!("(select generation from projection_checkpoints where name = '", $name, "')")
    };
}
pub(crate) use serving;

impl ReadModels {
    pub fn new(db: Database) -> Self {
        ReadModels { db, replica: None }
    }

    /// Reads from `replica` (a streaming replica of `db`'s Postgres database) when given.
    pub fn with_replica(db: Database, replica: Option<PgPool>) -> Self {
        ReadModels { db, replica }
    }

    /// The read replica's pool, when reads go to one.
    pub fn replica(&self) -> Option<&PgPool> {
        self.replica.as_ref()
    }

    pub(crate) async fn conn(&self) -> Result<ReadConn, ProjectionError> {
        ReadConn::acquire_from(&self.db, self.replica.as_ref()).await
    }

    /// Projection `name`'s checkpoint as these reads see it (on the replica, if any).
    pub(crate) async fn checkpoint(&self, name: &str) -> Result<Checkpoint, ProjectionError> {
        checkpoint::load(&mut self.conn().await?.conn(), name).await
    }

    /// Every checkpoint as these reads see it.
    pub(crate) async fn checkpoints(&self) -> Result<Vec<Checkpoint>, ProjectionError> {
        checkpoint::load_all(&mut self.conn().await?.conn()).await
    }
}

pub(crate) fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row more than asked, to know whether there is a next page.
pub(crate) fn limit(first: usize) -> i64 {
    i64::try_from(first).unwrap_or(i64::MAX - 1).saturating_add(1)
}

pub(crate) fn encode_cursor(list: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}:{key}"))
}

pub(crate) fn decode_cursor(list: &str, cursor: &str) -> Result<String, ProjectionError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ProjectionError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| ProjectionError::BadCursor)?;
    let (prefix, key) = text.split_once(':').ok_or(ProjectionError::BadCursor)?;
    if prefix != list || key.is_empty() {
        return Err(ProjectionError::BadCursor);
    }
    Ok(key.to_owned())
}

pub(crate) fn decode_position_cursor(list: &str, cursor: &str) -> Result<i64, ProjectionError> {
    decode_cursor(list, cursor)?
        .parse::<i64>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or(ProjectionError::BadCursor)
}

pub(crate) fn u64_of(value: i64, what: &str) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt(format!("{what} {value} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let cursor = encode_cursor("cart", "42");
        assert_eq!(decode_position_cursor("cart", &cursor).unwrap(), 42);
        assert!(matches!(decode_position_cursor("order", &cursor), Err(ProjectionError::BadCursor)));
        for bad in ["", "!!", "bm9wZQ", &encode_cursor("cart", "x"), &encode_cursor("cart", "-1")] {
            assert!(matches!(decode_position_cursor("cart", bad), Err(ProjectionError::BadCursor)), "{bad}");
        }
        assert_eq!(decode_cursor("product", &encode_cursor("product", "tea-1")).unwrap(), "tea-1");
    }
}

//! The read models and how each applies a batch of events.
//!
//! Applying is two steps so that a write transaction stays short (on Postgres every
//! transaction that holds an xid holds back the feed horizon for every reader; on SQLite it
//! holds the one writer connection): [`Model::prepare`] decodes the batch and does any
//! reading of the event store *before* the transaction, and [`Model::write`] loads the rows
//! the batch touches, folds the events into them in memory and writes them back with one
//! multi-row statement per table. Each row remembers the stream version it includes, so an
//! event at or below it is skipped: applying a batch twice cannot double-count the entity
//! models even without the checkpoint (which makes it impossible anyway).

//!
//! Each model is one folder: its rows and the statements that write them for both
//! backends, its `write` (`mod.rs`), and its queries with the view the API renders
//! (`query.rs`). What all queries share is in `read_models`.

pub(crate) mod analytics;
pub(crate) mod carts;
pub(crate) mod notifications;
pub(crate) mod orders;
pub(crate) mod products;
pub(crate) mod read_models;

use std::fmt;

use domain::{AnyEvent, StreamId};
use store::{EventStore, RecordedEvent};

use crate::db::{Arg, Conn, Sql};
use crate::error::ProjectionError;

/// A read model: one projection with its checkpoint row of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    Carts,
    Orders,
    Products,
    Notifications,
    Analytics,
}

impl Model {
    pub const ALL: [Model; 5] = [Model::Carts, Model::Orders, Model::Products, Model::Notifications, Model::Analytics];

    pub fn name(self) -> &'static str {
        match self {
            Model::Carts => "carts",
            Model::Orders => "orders",
            Model::Products => "products",
            Model::Notifications => "notifications",
            Model::Analytics => "analytics",
        }
    }

    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The stream categories this model reads; the feed is filtered by them.
    pub fn categories(self) -> &'static [&'static str] {
        match self {
            // `archive`: the store's archive log says when a cart was archived (#15).
            Model::Carts => &["cart", "archive"],
            // `customer`: PersonalDataErased, to drop what was derived from personal data.
            Model::Orders | Model::Notifications => &["order", "customer"],
            Model::Products => &["product"],
            Model::Analytics => &["cart", "order"],
        }
    }

    /// Decodes a batch and reads whatever else it needs from the store, outside any
    /// transaction.
    pub(crate) async fn prepare<'e>(self, store: &dyn EventStore, events: &'e [RecordedEvent]) -> Result<Prepared<'e>, ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        let mut archived_carts = Vec::new();
        for event in events {
            match archived_stream(event)? {
                Some(archived) => archived_carts.extend(archived_cart(&archived)),
                None => decoded.push(decode(event)?),
            }
        }
        let recipients = match self {
            Model::Notifications => notifications::recipients(store, &decoded).await?,
            _ => Default::default(),
        };
        Ok(Prepared {
            events: decoded,
            recipients,
            archived_carts,
        })
    }

    /// Applies a prepared batch to `generation` inside the caller's transaction.
    pub(crate) async fn write(self, conn: &mut Conn<'_>, generation: i64, prepared: &Prepared<'_>, memory: &Memory) -> Result<(), ProjectionError> {
        match self {
            Model::Carts => carts::write(conn, generation, &prepared.events, &memory.cart_lines, &prepared.archived_carts).await,
            Model::Orders => orders::write(conn, generation, &prepared.events).await,
            Model::Products => products::write(conn, generation, &prepared.events).await,
            Model::Notifications => notifications::write(conn, generation, prepared).await,
            Model::Analytics => analytics::write(conn, generation, &prepared.events).await,
        }
    }

    /// Deletes every generation but `keep` and `also_keep` (stale copies from rebuilds).
    pub(crate) async fn delete_other_generations(self, conn: &mut Conn<'_>, keep: i64, also_keep: Option<i64>) -> Result<u64, ProjectionError> {
        let mut deleted = 0;
        for sql in self.delete_generation_sql() {
            deleted += conn.execute(*sql, &[Arg::Int(keep), Arg::Int(also_keep.unwrap_or(keep))]).await?;
        }
        Ok(deleted)
    }

    fn delete_generation_sql(self) -> &'static [Sql] {
        macro_rules! delete {
            ($($table:literal),+) => {
                &[$(Sql {
                    pg: concat!("delete from ", $table, " where generation <> $1 and generation <> $2"),
                    lite: concat!("delete from ", $table, " where generation <> $1 and generation <> $2"),
                }),+]
            };
        }
        match self {
            Model::Carts => delete!("carts", "cart_lines"),
            Model::Orders => delete!("orders", "order_lines"),
            Model::Products => delete!("products"),
            Model::Notifications => delete!("notifications"),
            Model::Analytics => delete!("analytics_skus", "analytics_daily"),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the models of one process remember between batches (only ever a guess that each
/// model checks against its rows).
#[derive(Default)]
pub(crate) struct Memory {
    cart_lines: carts::WrittenLines,
}

/// A decoded batch and what `prepare` looked up for it.
#[derive(Default)]
pub(crate) struct Prepared<'e> {
    pub events: Vec<Decoded<'e>>,
    /// Notifications: the recipient of each order the batch mentions.
    pub recipients: std::collections::HashMap<uuid::Uuid, notifications::Recipient>,
    /// Carts: the carts the batch's archive-log events archived (their rows go).
    pub archived_carts: Vec<uuid::Uuid>,
}

/// The data of an archive-log event (`None` for any other event).
fn archived_stream(recorded: &RecordedEvent) -> Result<Option<store::StreamArchivedData>, ProjectionError> {
    if recorded.stream_id != store::ARCHIVE_LOG_STREAM {
        return Ok(None);
    }
    if recorded.event_type != store::STREAM_ARCHIVED {
        return Err(ProjectionError::Event {
            position: recorded.position,
            event_type: recorded.event_type.clone(),
            reason: "unknown archive-log event".to_owned(),
        });
    }
    serde_json::from_str(recorded.data.get()).map(Some).map_err(|e| ProjectionError::Event {
        position: recorded.position,
        event_type: recorded.event_type.clone(),
        reason: e.to_string(),
    })
}

fn archived_cart(archived: &store::StreamArchivedData) -> Option<uuid::Uuid> {
    match StreamId::parse(&archived.stream_id)? {
        StreamId::Cart(id) => Some(*id.as_uuid()),
        _ => None,
    }
}

/// One recorded event (borrowed from the page, not copied) with its stream and domain
/// event decoded.
pub(crate) struct Decoded<'e> {
    pub recorded: &'e RecordedEvent,
    pub stream: StreamId,
    pub event: AnyEvent,
}

impl Decoded<'_> {
    /// For `PersonalDataErased`: the customer and the event's position. The read models
    /// that keep sealed personal data drop it from that customer's rows written before.
    pub(crate) fn personal_data_erased(&self) -> Option<(&str, i64)> {
        match &self.event {
            AnyEvent::Customer(domain::CustomerEvent::PersonalDataErased { customer_id }) => {
                Some((customer_id.as_str(), crate::db::pos(self.recorded.position)))
            }
            _ => None,
        }
    }
}

/// An event this version of the domain cannot read is a deterministic failure: the model
/// would be wrong if it skipped it.
pub(crate) fn decode(recorded: &RecordedEvent) -> Result<Decoded<'_>, ProjectionError> {
    let fail = |reason: String| ProjectionError::Event {
        position: recorded.position,
        event_type: recorded.event_type.clone(),
        reason,
    };
    let stream = StreamId::parse(&recorded.stream_id).ok_or_else(|| fail(format!("unknown stream id {:?}", recorded.stream_id)))?;
    let event = AnyEvent::from_json(&recorded.event_type, recorded.data.get()).map_err(|e| fail(e.to_string()))?;
    if event.category() != stream.category() {
        return Err(fail(format!("a {} event in stream {}", event.category(), recorded.stream_id)));
    }
    Ok(Decoded { recorded, stream, event })
}

/// A stream version as stored.
pub(crate) fn version(recorded: &RecordedEvent) -> i64 {
    i64::try_from(recorded.version).unwrap_or(i64::MAX)
}

/// A u32 quantity as stored.
pub(crate) fn int(value: u32) -> i64 {
    i64::from(value)
}

/// A stored count back to u32 (read models never store a negative or oversized one).
pub(crate) fn to_u32(value: i64, what: &str) -> Result<u32, ProjectionError> {
    u32::try_from(value).map_err(|_| ProjectionError::Corrupt(format!("{what} {value} out of range")))
}

/// The ids of a batch as a JSON array parameter.
pub(crate) fn ids_arg<T: serde::Serialize>(ids: impl IntoIterator<Item = T>) -> Result<Arg, ProjectionError> {
    let ids: Vec<T> = ids.into_iter().collect();
    crate::db::json_arg(&ids)
}

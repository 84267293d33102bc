//! Analytics: what a shop operator asks first, kept as counters.
//!
//! * Per sku: how often it is put in carts (events and units) and how much of it is bought
//!   (units and revenue of placed orders). "Added a lot, bought little" is the first thing to
//!   look at in a catalog.
//! * Per UTC day: carts created and checked out (the conversion funnel), orders placed,
//!   shipped and cancelled, and revenue placed.
//! * Abandoned carts are not counted here: they are a question about *now* (open carts with
//!   items and no change for a while), answered from the carts read model at query time
//!   ([`crate::ReadModels::analytics`]).
//!
//! A batch folds into in-memory deltas and adds them with one upsert per table; only the
//! checkpoint (same transaction) keeps counters from counting an event twice.

mod query;

pub use query::{AnalyticsView, DayStats, SkuStats};

use std::collections::BTreeMap;

use domain::{AnyEvent, CartEvent, OrderEvent};
use serde::{Deserialize, Serialize};
use time::macros::format_description;

use super::{int, Decoded};
use crate::db::{json_arg, Arg, Conn, Sql};
use crate::error::ProjectionError;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SkuRow {
    pub sku: String,
    pub add_events: i64,
    pub units_added: i64,
    pub units_ordered: i64,
    pub revenue_ordered: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DayRow {
    pub day: String,
    pub carts_created: i64,
    pub carts_checked_out: i64,
    pub orders_placed: i64,
    pub orders_shipped: i64,
    pub orders_cancelled: i64,
    pub revenue_placed: i64,
}

const ADD_SKUS: Sql = Sql {
    pg: "insert into analytics_skus (generation, sku, add_events, units_added, units_ordered, revenue_ordered)
         select $1, r.sku, r.add_events, r.units_added, r.units_ordered, r.revenue_ordered
           from jsonb_to_recordset($2::jsonb) as r(sku text, add_events bigint, units_added bigint, units_ordered bigint, revenue_ordered bigint)
         on conflict (generation, sku) do update set
             add_events = analytics_skus.add_events + excluded.add_events,
             units_added = analytics_skus.units_added + excluded.units_added,
             units_ordered = analytics_skus.units_ordered + excluded.units_ordered,
             revenue_ordered = analytics_skus.revenue_ordered + excluded.revenue_ordered",
    lite: "insert into analytics_skus (generation, sku, add_events, units_added, units_ordered, revenue_ordered)
         select $1, json_extract(value, '$.sku'), json_extract(value, '$.add_events'), json_extract(value, '$.units_added'),
                json_extract(value, '$.units_ordered'), json_extract(value, '$.revenue_ordered')
           from json_each($2) where true
         on conflict (generation, sku) do update set
             add_events = analytics_skus.add_events + excluded.add_events,
             units_added = analytics_skus.units_added + excluded.units_added,
             units_ordered = analytics_skus.units_ordered + excluded.units_ordered,
             revenue_ordered = analytics_skus.revenue_ordered + excluded.revenue_ordered",
};

const ADD_DAYS: Sql = Sql {
    pg: "insert into analytics_daily (generation, day, carts_created, carts_checked_out, orders_placed, orders_shipped, orders_cancelled, revenue_placed)
         select $1, r.day, r.carts_created, r.carts_checked_out, r.orders_placed, r.orders_shipped, r.orders_cancelled, r.revenue_placed
           from jsonb_to_recordset($2::jsonb) as r(day text, carts_created bigint, carts_checked_out bigint, orders_placed bigint,
                orders_shipped bigint, orders_cancelled bigint, revenue_placed bigint)
         on conflict (generation, day) do update set
             carts_created = analytics_daily.carts_created + excluded.carts_created,
             carts_checked_out = analytics_daily.carts_checked_out + excluded.carts_checked_out,
             orders_placed = analytics_daily.orders_placed + excluded.orders_placed,
             orders_shipped = analytics_daily.orders_shipped + excluded.orders_shipped,
             orders_cancelled = analytics_daily.orders_cancelled + excluded.orders_cancelled,
             revenue_placed = analytics_daily.revenue_placed + excluded.revenue_placed",
    lite: "insert into analytics_daily (generation, day, carts_created, carts_checked_out, orders_placed, orders_shipped, orders_cancelled, revenue_placed)
         select $1, json_extract(value, '$.day'), json_extract(value, '$.carts_created'), json_extract(value, '$.carts_checked_out'),
                json_extract(value, '$.orders_placed'), json_extract(value, '$.orders_shipped'), json_extract(value, '$.orders_cancelled'),
                json_extract(value, '$.revenue_placed')
           from json_each($2) where true
         on conflict (generation, day) do update set
             carts_created = analytics_daily.carts_created + excluded.carts_created,
             carts_checked_out = analytics_daily.carts_checked_out + excluded.carts_checked_out,
             orders_placed = analytics_daily.orders_placed + excluded.orders_placed,
             orders_shipped = analytics_daily.orders_shipped + excluded.orders_shipped,
             orders_cancelled = analytics_daily.orders_cancelled + excluded.orders_cancelled,
             revenue_placed = analytics_daily.revenue_placed + excluded.revenue_placed",
};

pub(crate) fn day_of(at: time::OffsetDateTime) -> String {
    let day = at.to_offset(time::UtcOffset::UTC).date();
    day.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_else(|_| day.to_string())
}

pub(crate) async fn write(conn: &mut Conn<'_>, generation: i64, events: &[Decoded<'_>]) -> Result<(), ProjectionError> {
    let mut skus: BTreeMap<String, SkuRow> = BTreeMap::new();
    let mut days: BTreeMap<String, DayRow> = BTreeMap::new();
    for decoded in events {
        let day_key = day_of(decoded.recorded.recorded_at);
        let day = days.entry(day_key.clone()).or_insert_with(|| DayRow {
            day: day_key,
            ..DayRow::default()
        });
        match &decoded.event {
            AnyEvent::Cart(CartEvent::CartCreated { .. }) => day.carts_created += 1,
            AnyEvent::Cart(CartEvent::CartCheckedOut { .. }) => day.carts_checked_out += 1,
            AnyEvent::Cart(CartEvent::ItemAddedToCart { sku, quantity, .. }) => {
                let row = skus.entry(sku.as_str().to_owned()).or_insert_with(|| SkuRow {
                    sku: sku.as_str().to_owned(),
                    ..SkuRow::default()
                });
                row.add_events += 1;
                row.units_added += int(*quantity);
            }
            AnyEvent::Order(OrderEvent::OrderPlaced { lines, total, .. }) => {
                day.orders_placed += 1;
                day.revenue_placed = day.revenue_placed.saturating_add(total.minor_units());
                for line in lines {
                    let row = skus.entry(line.sku.as_str().to_owned()).or_insert_with(|| SkuRow {
                        sku: line.sku.as_str().to_owned(),
                        ..SkuRow::default()
                    });
                    row.units_ordered += int(line.quantity);
                    row.revenue_ordered = row.revenue_ordered.saturating_add(line.line_total().minor_units());
                }
            }
            AnyEvent::Order(OrderEvent::OrderShipped {}) => day.orders_shipped += 1,
            AnyEvent::Order(OrderEvent::OrderCancelled { .. }) => day.orders_cancelled += 1,
            _ => {}
        }
    }
    if !skus.is_empty() {
        let rows: Vec<&SkuRow> = skus.values().collect();
        conn.execute(ADD_SKUS, &[Arg::Int(generation), json_arg(&rows)?]).await?;
    }
    if !days.is_empty() {
        let rows: Vec<&DayRow> = days.values().collect();
        conn.execute(ADD_DAYS, &[Arg::Int(generation), json_arg(&rows)?]).await?;
    }
    Ok(())
}

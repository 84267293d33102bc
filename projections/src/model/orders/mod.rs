//! The orders read model: one row per order (status, totals) and its lines, which never
//! change after the order is placed.
//!
//! Personal data stays sealed here as in the event (the API opens it when a client asks
//! for it); `PersonalDataErased` drops it from the customer's earlier orders and marks them
//! erased, so neither the rows nor a rebuild keep even the ciphertext.

mod query;

pub use query::OrderView;

use std::collections::{BTreeMap, BTreeSet};

use domain::{AnyEvent, OrderEvent, OrderStatus, StreamId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ids_arg, int, version, Decoded};
use crate::db::{json_arg, pos, ts, Arg, Conn, Sql};
use crate::error::ProjectionError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrderRow {
    pub generation: i64,
    pub id: Uuid,
    pub cart_id: Uuid,
    pub customer_id: String,
    pub status: String,
    pub version: i64,
    pub total: i64,
    pub cancel_reason: Option<String>,
    /// Sealed ([`domain::SealedPersonalData`]).
    pub personal_data: Option<String>,
    pub personal_data_erased: bool,
    pub placed_position: i64,
    #[serde(with = "ts")]
    pub placed_at: OffsetDateTime,
    #[serde(with = "ts")]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct OrderLineRow {
    pub order_id: Uuid,
    pub line_no: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

macro_rules! order_json_pg {
    () => {
        "json_build_object('generation', o.generation, 'id', o.id, 'cart_id', o.cart_id, 'customer_id', o.customer_id, \
         'status', o.status, 'version', o.version, 'total', o.total, 'cancel_reason', o.cancel_reason, \
         'personal_data', o.personal_data, 'personal_data_erased', o.personal_data_erased, \
         'placed_position', o.placed_position, 'placed_at', o.placed_at, 'updated_at', o.updated_at)::text"
    };
}
macro_rules! order_json_lite {
    () => {
        "json_object('generation', o.generation, 'id', o.id, 'cart_id', o.cart_id, 'customer_id', o.customer_id, \
         'status', o.status, 'version', o.version, 'total', o.total, 'cancel_reason', o.cancel_reason, \
         'personal_data', o.personal_data, 'personal_data_erased', json(iif(o.personal_data_erased, 'true', 'false')), \
         'placed_position', o.placed_position, 'placed_at', o.placed_at, 'updated_at', o.updated_at)"
    };
}
pub(crate) use {order_json_lite, order_json_pg};

/// The lines of several orders of one generation, in order and line order (on Postgres one
/// primary-key lookup per id, see `db`).
pub(crate) const LINES_BY_ORDERS: Sql = Sql {
    pg: "select json_build_object('order_id', l.order_id, 'line_no', l.line_no, 'sku', l.sku, 'name', l.name, 'quantity', l.quantity, \
           'unit_price', l.unit_price, 'line_total', l.line_total)::text
           from jsonb_array_elements_text($2::jsonb) as k(id)
          cross join lateral (select * from order_lines l where l.generation = $1 and l.order_id = k.id::uuid offset 0) l
          order by l.order_id, l.line_no",
    lite: "select json_object('order_id', l.order_id, 'line_no', l.line_no, 'sku', l.sku, 'name', l.name, 'quantity', l.quantity, \
           'unit_price', l.unit_price, 'line_total', l.line_total)
           from order_lines l
          where l.generation = $1 and l.order_id in (select value from json_each($2))
          order by l.order_id, l.line_no",
};

const ORDERS_BY_IDS: Sql = Sql {
    pg: concat!(
        "select ",
        order_json_pg!(),
        " from jsonb_array_elements_text($2::jsonb) as k(id)
          cross join lateral (select * from orders o where o.generation = $1 and o.id = k.id::uuid limit 1) o"
    ),
    lite: concat!(
        "select ",
        order_json_lite!(),
        " from orders o where o.generation = $1 and o.id in (select value from json_each($2))"
    ),
};

const UPSERT_ORDERS: Sql = Sql {
    pg: "insert into orders (generation, id, cart_id, customer_id, status, version, total, cancel_reason, personal_data,
                             personal_data_erased, placed_position, placed_at, updated_at)
         select $1, r.id, r.cart_id, r.customer_id, r.status, r.version, r.total, r.cancel_reason, r.personal_data,
                r.personal_data_erased, r.placed_position, r.placed_at, r.updated_at
           from jsonb_to_recordset($2::jsonb) as r(id uuid, cart_id uuid, customer_id text, status text, version bigint, total bigint,
                cancel_reason text, personal_data text, personal_data_erased boolean, placed_position bigint, placed_at timestamptz,
                updated_at timestamptz)
         on conflict (generation, id) do update set
             status = excluded.status, version = excluded.version, cancel_reason = excluded.cancel_reason, updated_at = excluded.updated_at",
    lite: "insert into orders (generation, id, cart_id, customer_id, status, version, total, cancel_reason, personal_data,
                             personal_data_erased, placed_position, placed_at, updated_at)
         select $1, json_extract(value, '$.id'), json_extract(value, '$.cart_id'), json_extract(value, '$.customer_id'),
                json_extract(value, '$.status'), json_extract(value, '$.version'), json_extract(value, '$.total'),
                json_extract(value, '$.cancel_reason'), json_extract(value, '$.personal_data'),
                json_extract(value, '$.personal_data_erased'), json_extract(value, '$.placed_position'),
                json_extract(value, '$.placed_at'), json_extract(value, '$.updated_at')
           from json_each($2) where true
         on conflict (generation, id) do update set
             status = excluded.status, version = excluded.version, cancel_reason = excluded.cancel_reason, updated_at = excluded.updated_at",
};

/// `PersonalDataErased`: the customer's orders placed before it lose their sealed data.
/// (Personal data never changes after placing, so the upsert above leaves it alone and this
/// may run after it.)
const ERASE: Sql = Sql {
    pg: "update orders set personal_data = null, personal_data_erased = true
          where generation = $1 and customer_id = $2 and placed_position < $3",
    lite: "update orders set personal_data = null, personal_data_erased = 1
          where generation = $1 and customer_id = $2 and placed_position < $3",
};

const INSERT_LINES: Sql = Sql {
    pg: "insert into order_lines (generation, order_id, line_no, sku, name, quantity, unit_price, line_total)
         select $1, r.order_id, r.line_no, r.sku, r.name, r.quantity, r.unit_price, r.line_total
           from jsonb_to_recordset($2::jsonb) as r(order_id uuid, line_no bigint, sku text, name text, quantity bigint,
                unit_price bigint, line_total bigint)
         on conflict do nothing",
    lite: "insert into order_lines (generation, order_id, line_no, sku, name, quantity, unit_price, line_total)
         select $1, json_extract(value, '$.order_id'), json_extract(value, '$.line_no'), json_extract(value, '$.sku'),
                json_extract(value, '$.name'), json_extract(value, '$.quantity'), json_extract(value, '$.unit_price'),
                json_extract(value, '$.line_total')
           from json_each($2) where true
         on conflict do nothing",
};

pub(crate) fn parse_status(status: &str) -> Result<OrderStatus, ProjectionError> {
    match status {
        "PLACED" => Ok(OrderStatus::Placed),
        "PREPARING" => Ok(OrderStatus::Preparing),
        "SHIPPED" => Ok(OrderStatus::Shipped),
        "CANCELLED" => Ok(OrderStatus::Cancelled),
        other => Err(ProjectionError::Corrupt(format!("order status {other:?}"))),
    }
}

pub(crate) async fn write(conn: &mut Conn<'_>, generation: i64, events: &[Decoded<'_>]) -> Result<(), ProjectionError> {
    // Orders placed in this batch are loaded too: their version guards against a repeat.
    let to_load: BTreeSet<Uuid> = events
        .iter()
        .filter_map(|d| match &d.stream {
            StreamId::Order(id) => Some(*id.as_uuid()),
            _ => None,
        })
        .collect();
    let mut orders: BTreeMap<Uuid, (OrderRow, bool)> = BTreeMap::new();
    if !to_load.is_empty() {
        let rows: Vec<OrderRow> = conn.json_rows(ORDERS_BY_IDS, &[Arg::Int(generation), ids_arg(to_load.iter())?]).await?;
        orders.extend(rows.into_iter().map(|row| (row.id, (row, false))));
    }
    let mut new_lines = Vec::new();
    let mut erasures = Vec::new();

    for decoded in events {
        if let Some(erasure) = decoded.personal_data_erased() {
            erasures.push(erasure);
            continue;
        }
        let (StreamId::Order(id), AnyEvent::Order(event)) = (&decoded.stream, &decoded.event) else {
            continue;
        };
        let recorded = decoded.recorded;
        let version = version(recorded);
        let id = *id.as_uuid();
        if let OrderEvent::OrderPlaced {
            cart_id,
            customer_id,
            lines,
            total,
            personal_data,
            ..
        } = event
        {
            if orders.get(&id).is_some_and(|(row, _)| row.version >= version) {
                continue;
            }
            let row = OrderRow {
                generation,
                id,
                cart_id: *cart_id.as_uuid(),
                customer_id: customer_id.as_str().to_owned(),
                status: OrderStatus::Placed.as_str().to_owned(),
                version,
                total: total.minor_units(),
                cancel_reason: None,
                personal_data: personal_data.as_ref().map(|p| p.as_str().to_owned()),
                personal_data_erased: false,
                placed_position: pos(recorded.position),
                placed_at: recorded.recorded_at,
                updated_at: recorded.recorded_at,
            };
            orders.insert(id, (row, true));
            for (line_no, line) in lines.iter().enumerate() {
                new_lines.push(OrderLineRow {
                    order_id: id,
                    line_no: line_no as i64,
                    sku: line.sku.as_str().to_owned(),
                    name: line.name.clone(),
                    quantity: int(line.quantity),
                    unit_price: line.unit_price.minor_units(),
                    line_total: line.line_total().minor_units(),
                });
            }
            continue;
        }
        let Some((row, changed)) = orders.get_mut(&id) else {
            tracing::warn!(stream = %recorded.stream_id, position = %recorded.position, "order event before OrderPlaced ignored");
            continue;
        };
        if version <= row.version {
            continue;
        }
        match event {
            OrderEvent::OrderPlaced { .. } => {}
            OrderEvent::OrderPreparationStarted {} => row.status = OrderStatus::Preparing.as_str().to_owned(),
            OrderEvent::OrderShipped {} => row.status = OrderStatus::Shipped.as_str().to_owned(),
            OrderEvent::OrderCancelled { reason } => {
                row.status = OrderStatus::Cancelled.as_str().to_owned();
                row.cancel_reason = reason.clone();
            }
        }
        row.version = version;
        row.updated_at = recorded.recorded_at;
        *changed = true;
    }

    let changed: Vec<&OrderRow> = orders.values().filter(|(_, changed)| *changed).map(|(row, _)| row).collect();
    if !changed.is_empty() {
        conn.execute(UPSERT_ORDERS, &[Arg::Int(generation), json_arg(&changed)?]).await?;
    }
    if !new_lines.is_empty() {
        conn.execute(INSERT_LINES, &[Arg::Int(generation), json_arg(&new_lines)?]).await?;
    }
    for (customer_id, position) in erasures {
        conn.execute(ERASE, &[Arg::Int(generation), Arg::Text(customer_id.to_owned()), Arg::Int(position)])
            .await?;
    }
    Ok(())
}

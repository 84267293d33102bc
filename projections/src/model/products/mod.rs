//! The products read model: catalog entry and stock per sku. Reservations are kept as a
//! total (the events carry the units each release or shipment takes), which is all readers
//! need; the aggregate keeps them per order.

mod query;

pub use query::ProductView;

use std::collections::{BTreeMap, BTreeSet};

use domain::{AnyEvent, ProductEvent, StreamId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ids_arg, int, version, Decoded};
use crate::db::{json_arg, ts, Arg, Conn, Sql};
use crate::error::ProjectionError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProductRow {
    pub generation: i64,
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub version: i64,
    #[serde(with = "ts")]
    pub updated_at: OffsetDateTime,
}

macro_rules! product_json_pg {
    () => {
        "json_build_object('generation', p.generation, 'sku', p.sku, 'name', p.name, 'price', p.price, 'on_hand', p.on_hand, \
         'reserved', p.reserved, 'available', p.available, 'version', p.version, 'updated_at', p.updated_at)::text"
    };
}
macro_rules! product_json_lite {
    () => {
        "json_object('generation', p.generation, 'sku', p.sku, 'name', p.name, 'price', p.price, 'on_hand', p.on_hand, \
         'reserved', p.reserved, 'available', p.available, 'version', p.version, 'updated_at', p.updated_at)"
    };
}
pub(crate) use {product_json_lite, product_json_pg};

const PRODUCTS_BY_SKUS: Sql = Sql {
    pg: concat!(
        "select ",
        product_json_pg!(),
        " from jsonb_array_elements_text($2::jsonb) as k(sku)
          cross join lateral (select * from products p where p.generation = $1 and p.sku = k.sku limit 1) p"
    ),
    lite: concat!(
        "select ",
        product_json_lite!(),
        " from products p where p.generation = $1 and p.sku in (select value from json_each($2))"
    ),
};

const UPSERT_PRODUCTS: Sql = Sql {
    pg: "insert into products (generation, sku, name, price, on_hand, reserved, available, version, updated_at)
         select $1, r.sku, r.name, r.price, r.on_hand, r.reserved, r.available, r.version, r.updated_at
           from jsonb_to_recordset($2::jsonb) as r(sku text, name text, price bigint, on_hand bigint, reserved bigint,
                available bigint, version bigint, updated_at timestamptz)
         on conflict (generation, sku) do update set
             name = excluded.name, price = excluded.price, on_hand = excluded.on_hand, reserved = excluded.reserved,
             available = excluded.available, version = excluded.version, updated_at = excluded.updated_at",
    lite: "insert into products (generation, sku, name, price, on_hand, reserved, available, version, updated_at)
         select $1, json_extract(value, '$.sku'), json_extract(value, '$.name'), json_extract(value, '$.price'),
                json_extract(value, '$.on_hand'), json_extract(value, '$.reserved'), json_extract(value, '$.available'),
                json_extract(value, '$.version'), json_extract(value, '$.updated_at')
           from json_each($2) where true
         on conflict (generation, sku) do update set
             name = excluded.name, price = excluded.price, on_hand = excluded.on_hand, reserved = excluded.reserved,
             available = excluded.available, version = excluded.version, updated_at = excluded.updated_at",
};

pub(crate) async fn write(conn: &mut Conn<'_>, generation: i64, events: &[Decoded<'_>]) -> Result<(), ProjectionError> {
    let skus: BTreeSet<&str> = events
        .iter()
        .filter_map(|d| match &d.stream {
            StreamId::Product(sku) => Some(sku.as_str()),
            _ => None,
        })
        .collect();
    if skus.is_empty() {
        return Ok(());
    }
    let rows: Vec<ProductRow> = conn.json_rows(PRODUCTS_BY_SKUS, &[Arg::Int(generation), ids_arg(skus.iter())?]).await?;
    let mut products: BTreeMap<String, (ProductRow, bool)> = rows.into_iter().map(|row| (row.sku.clone(), (row, false))).collect();

    for decoded in events {
        let (StreamId::Product(sku), AnyEvent::Product(event)) = (&decoded.stream, &decoded.event) else {
            continue;
        };
        let recorded = decoded.recorded;
        let version = version(recorded);
        if let ProductEvent::ProductRegistered { name, price, .. } = event {
            if products.get(sku.as_str()).is_some_and(|(row, _)| row.version >= version) {
                continue;
            }
            let row = ProductRow {
                generation,
                sku: sku.as_str().to_owned(),
                name: name.clone(),
                price: price.minor_units(),
                on_hand: 0,
                reserved: 0,
                available: 0,
                version,
                updated_at: recorded.recorded_at,
            };
            products.insert(sku.as_str().to_owned(), (row, true));
            continue;
        }
        let Some((row, changed)) = products.get_mut(sku.as_str()) else {
            tracing::warn!(stream = %recorded.stream_id, position = %recorded.position, "product event before ProductRegistered ignored");
            continue;
        };
        if version <= row.version {
            continue;
        }
        // Saturating like the aggregate's evolve: a stored stream never makes this fail.
        match event {
            ProductEvent::ProductRegistered { .. } => {}
            ProductEvent::ProductPriceChanged { price } => row.price = price.minor_units(),
            ProductEvent::StockReceived { quantity } => row.on_hand = row.on_hand.saturating_add(int(*quantity)),
            ProductEvent::StockReserved { quantity, .. } => row.reserved = row.reserved.saturating_add(int(*quantity)),
            ProductEvent::StockReleased { quantity, .. } => row.reserved = (row.reserved - int(*quantity)).max(0),
            ProductEvent::StockShipped { quantity, .. } => {
                let taken = int(*quantity).min(row.reserved);
                row.reserved -= taken;
                row.on_hand = (row.on_hand - taken).max(0);
            }
        }
        row.available = (row.on_hand - row.reserved).max(0);
        row.version = version;
        row.updated_at = recorded.recorded_at;
        *changed = true;
    }

    let changed: Vec<&ProductRow> = products.values().filter(|(_, changed)| *changed).map(|(row, _)| row).collect();
    if !changed.is_empty() {
        conn.execute(UPSERT_PRODUCTS, &[Arg::Int(generation), json_arg(&changed)?]).await?;
    }
    Ok(())
}

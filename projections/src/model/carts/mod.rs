//! The carts read model: one row per cart and its lines, kept equal to the aggregate by
//! folding with the domain's own `evolve`.
//!
//! One file (about 510 lines), like every read model's `mod.rs`: its rows, their SQL for both
//! backends and the fold that writes them (the queries are in `query.rs`).

mod query;

pub use query::CartView;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use domain::{AnyEvent, Cart, CartEvent, CartId, CartStatus, CustomerId, Line, Money, OrderId, Sku, StreamId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ids_arg, version, Decoded};
use crate::db::{json_arg, ts, Arg, Conn, Sql};
use crate::error::ProjectionError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CartRow {
    pub generation: i64,
    pub id: Uuid,
    pub customer_id: String,
    pub status: String,
    pub version: i64,
    pub item_count: i64,
    pub subtotal: i64,
    pub order_id: Option<Uuid>,
    pub created_position: i64,
    #[serde(with = "ts")]
    pub created_at: OffsetDateTime,
    #[serde(with = "ts")]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CartLineRow {
    pub cart_id: Uuid,
    pub line_no: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
}

/// The JSON object of a `carts c` row, per backend (macros, so `concat!` can build
/// statements from them here and in `query.rs`).
macro_rules! cart_json_pg {
    () => {
        "json_build_object('generation', c.generation, 'id', c.id, 'customer_id', c.customer_id, 'status', c.status, \
         'version', c.version, 'item_count', c.item_count, 'subtotal', c.subtotal, 'order_id', c.order_id, \
         'created_position', c.created_position, 'created_at', c.created_at, 'updated_at', c.updated_at)::text"
    };
}
macro_rules! cart_json_lite {
    () => {
        "json_object('generation', c.generation, 'id', c.id, 'customer_id', c.customer_id, 'status', c.status, \
         'version', c.version, 'item_count', c.item_count, 'subtotal', c.subtotal, 'order_id', c.order_id, \
         'created_position', c.created_position, 'created_at', c.created_at, 'updated_at', c.updated_at)"
    };
}
pub(crate) use {cart_json_lite, cart_json_pg};

/// The lines of several carts of one generation, in cart and line order (on Postgres one
/// primary-key lookup per id, see `db`).
pub(crate) const LINES_BY_CARTS: Sql = Sql {
    pg: "select json_build_object('cart_id', l.cart_id, 'line_no', l.line_no, 'sku', l.sku, 'name', l.name, 'quantity', l.quantity, \
           'unit_price', l.unit_price, 'line_total', l.line_total)::text
           from jsonb_array_elements_text($2::jsonb) as k(id)
          cross join lateral (select * from cart_lines l where l.generation = $1 and l.cart_id = k.id::uuid offset 0) l
          order by l.cart_id, l.line_no",
    lite: "select json_object('cart_id', l.cart_id, 'line_no', l.line_no, 'sku', l.sku, 'name', l.name, 'quantity', l.quantity, \
           'unit_price', l.unit_price, 'line_total', l.line_total)
           from cart_lines l
          where l.generation = $1 and l.cart_id in (select value from json_each($2))
          order by l.cart_id, l.line_no",
};

const CARTS_BY_IDS: Sql = Sql {
    pg: concat!(
        "select ",
        cart_json_pg!(),
        " from jsonb_array_elements_text($2::jsonb) as k(id)
          cross join lateral (select * from carts c where c.generation = $1 and c.id = k.id::uuid limit 1) c"
    ),
    lite: concat!(
        "select ",
        cart_json_lite!(),
        " from carts c where c.generation = $1 and c.id in (select value from json_each($2))"
    ),
};

const UPSERT_CARTS: Sql = Sql {
    pg: "insert into carts (generation, id, customer_id, status, version, item_count, subtotal, order_id, created_position, created_at, updated_at)
         select $1, r.id, r.customer_id, r.status, r.version, r.item_count, r.subtotal, r.order_id, r.created_position, r.created_at, r.updated_at
           from jsonb_to_recordset($2::jsonb) as r(id uuid, customer_id text, status text, version bigint, item_count bigint,
                subtotal bigint, order_id uuid, created_position bigint, created_at timestamptz, updated_at timestamptz)
         on conflict (generation, id) do update set
             customer_id = excluded.customer_id, status = excluded.status, version = excluded.version,
             item_count = excluded.item_count, subtotal = excluded.subtotal, order_id = excluded.order_id,
             created_position = excluded.created_position, created_at = excluded.created_at, updated_at = excluded.updated_at",
    // `where true` tells SQLite's parser that `on conflict` belongs to the upsert.
    lite: "insert into carts (generation, id, customer_id, status, version, item_count, subtotal, order_id, created_position, created_at, updated_at)
         select $1, json_extract(value, '$.id'), json_extract(value, '$.customer_id'), json_extract(value, '$.status'),
                json_extract(value, '$.version'), json_extract(value, '$.item_count'), json_extract(value, '$.subtotal'),
                json_extract(value, '$.order_id'), json_extract(value, '$.created_position'), json_extract(value, '$.created_at'),
                json_extract(value, '$.updated_at')
           from json_each($2) where true
         on conflict (generation, id) do update set
             customer_id = excluded.customer_id, status = excluded.status, version = excluded.version,
             item_count = excluded.item_count, subtotal = excluded.subtotal, order_id = excluded.order_id,
             created_position = excluded.created_position, created_at = excluded.created_at, updated_at = excluded.updated_at",
};

/// Writes new and changed lines (a line is keyed by its place in the cart).
const UPSERT_LINES: Sql = Sql {
    pg: "insert into cart_lines (generation, cart_id, line_no, sku, name, quantity, unit_price, line_total)
         select $1, r.cart_id, r.line_no, r.sku, r.name, r.quantity, r.unit_price, r.line_total
           from jsonb_to_recordset($2::jsonb) as r(cart_id uuid, line_no bigint, sku text, name text, quantity bigint,
                unit_price bigint, line_total bigint)
         on conflict (generation, cart_id, line_no) do update set
             sku = excluded.sku, name = excluded.name, quantity = excluded.quantity,
             unit_price = excluded.unit_price, line_total = excluded.line_total",
    lite: "insert into cart_lines (generation, cart_id, line_no, sku, name, quantity, unit_price, line_total)
         select $1, json_extract(value, '$.cart_id'), json_extract(value, '$.line_no'), json_extract(value, '$.sku'),
                json_extract(value, '$.name'), json_extract(value, '$.quantity'), json_extract(value, '$.unit_price'),
                json_extract(value, '$.line_total')
           from json_each($2) where true
         on conflict (generation, cart_id, line_no) do update set
             sku = excluded.sku, name = excluded.name, quantity = excluded.quantity,
             unit_price = excluded.unit_price, line_total = excluded.line_total",
};

/// Deletes each listed cart's lines from `keep` on (the cart got shorter).
const DELETE_TAILS: Sql = Sql {
    // The rows found per cart (see `db`), then deleted by their tuple ids.
    pg: "delete from cart_lines where ctid = any(array(
           select l.ctid from jsonb_to_recordset($2::jsonb) as t(cart_id uuid, keep bigint)
            cross join lateral (select ctid from cart_lines l
                                 where l.generation = $1 and l.cart_id = t.cart_id and l.line_no >= t.keep offset 0) l))",
    lite: "delete from cart_lines where rowid in (
           select l.rowid from json_each($2) t
             join cart_lines l on l.generation = $1 and l.cart_id = json_extract(t.value, '$.cart_id')
                              and l.line_no >= json_extract(t.value, '$.keep'))",
};

/// A cart whose lines from `keep` on are to go.
#[derive(Serialize)]
struct Tail {
    cart_id: Uuid,
    keep: i64,
}

/// A cart being folded: the domain's state plus what only the read model keeps.
struct Entry {
    cart: Cart,
    version: i64,
    created_position: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    changed: bool,
}

pub(crate) fn status_str(status: CartStatus) -> &'static str {
    match status {
        CartStatus::Open => "OPEN",
        CartStatus::CheckedOut => "CHECKED_OUT",
    }
}

pub(crate) fn parse_status(status: &str) -> Result<CartStatus, ProjectionError> {
    match status {
        "OPEN" => Ok(CartStatus::Open),
        "CHECKED_OUT" => Ok(CartStatus::CheckedOut),
        other => Err(ProjectionError::Corrupt(format!("cart status {other:?}"))),
    }
}

fn corrupt(e: domain::DomainError) -> ProjectionError {
    ProjectionError::Corrupt(e.to_string())
}

fn to_domain(row: &CartRow, lines: &[CartLineRow]) -> Result<Cart, ProjectionError> {
    Ok(Cart {
        id: CartId::from_uuid(row.id),
        customer_id: CustomerId::parse(&row.customer_id).map_err(corrupt)?,
        status: parse_status(&row.status)?,
        lines: lines
            .iter()
            .map(|l| {
                Ok(Line {
                    sku: Sku::parse(&l.sku).map_err(corrupt)?,
                    name: l.name.clone(),
                    quantity: super::to_u32(l.quantity, "quantity")?,
                    unit_price: Money::from_minor(l.unit_price),
                })
            })
            .collect::<Result<_, ProjectionError>>()?,
        order_id: row.order_id.map(OrderId::from_uuid),
    })
}

/// What [`WrittenLines`] holds at most: a line (about 150 bytes) weighs 1, and so does each
/// cart, so that carts without lines cannot pile up without bound.
const WRITTEN_LINES_BUDGET: usize = 50_000;

/// The lines this process last wrote for each cart, with the cart version they belong to,
/// so that a batch on a cart written before does not read its lines back (on carts of a
/// few dozen lines that read was most of this model's cost per added item: every line as
/// JSON, for each batch). A guess checked against the row: lines are used only when the
/// stored row has the very version they were written with, and a cart's lines at a version
/// are a pure function of its events up to it, so whoever wrote that version (another
/// leader, an earlier attempt of a rolled-back batch) wrote these lines. Keyed by
/// generation too: a rebuild never sees the serving generation's lines. Bounded by lines
/// and carts, first in first out.
#[derive(Default)]
pub(crate) struct WrittenLines {
    inner: Mutex<Written>,
}

#[derive(Default)]
struct Written {
    /// (generation, cart) -> (version, lines); version -1 while a batch has taken them.
    entries: HashMap<(i64, Uuid), (i64, Vec<CartLineRow>)>,
    order: VecDeque<(i64, Uuid)>,
    /// Entries plus the lines they hold (see [`WRITTEN_LINES_BUDGET`]).
    weight: usize,
}

impl WrittenLines {
    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lines of `id` at `version`, if this process wrote exactly those (taken out: a
    /// batch that fails before [`WrittenLines::put`] leaves nothing stale behind).
    fn take(&self, generation: i64, id: Uuid, version: i64) -> Option<Vec<CartLineRow>> {
        let mut written = self.lock();
        let (at, lines) = written.entries.get_mut(&(generation, id))?;
        if *at != version {
            return None;
        }
        *at = -1;
        let lines = std::mem::take(lines);
        written.weight -= lines.len();
        Some(lines)
    }

    fn put(&self, generation: i64, id: Uuid, version: i64, lines: Vec<CartLineRow>) {
        let mut written = self.lock();
        written.weight += 1 + lines.len();
        let key = (generation, id);
        match written.entries.insert(key, (version, lines)) {
            Some((_, replaced)) => written.weight -= 1 + replaced.len(),
            None => written.order.push_back(key),
        }
        while written.weight > WRITTEN_LINES_BUDGET {
            let Some(oldest) = written.order.pop_front() else { break };
            if let Some((_, evicted)) = written.entries.remove(&oldest) {
                written.weight -= 1 + evicted.len();
            }
        }
    }
}

/// Deletes the rows of archived carts (#15): an archived cart is not served from the read
/// model. A rebuild reads the cart's events from the archive and then the archive-log event,
/// so it ends with no row either.
const DELETE_ARCHIVED: [Sql; 2] = [
    Sql {
        pg: "delete from cart_lines where generation = $1 and cart_id in (select value::uuid from jsonb_array_elements_text($2::jsonb))",
        lite: "delete from cart_lines where generation = $1 and cart_id in (select value from json_each($2))",
    },
    Sql {
        pg: "delete from carts where generation = $1 and id in (select value::uuid from jsonb_array_elements_text($2::jsonb))",
        lite: "delete from carts where generation = $1 and id in (select value from json_each($2))",
    },
];

pub(crate) async fn write(
    conn: &mut Conn<'_>,
    generation: i64,
    events: &[Decoded<'_>],
    written: &WrittenLines,
    archived: &[Uuid],
) -> Result<(), ProjectionError> {
    // A cart's events all come before its archive-log event, in this batch or an earlier one.
    write_events(conn, generation, events, written).await?;
    if !archived.is_empty() {
        for sql in DELETE_ARCHIVED {
            conn.execute(sql, &[Arg::Int(generation), ids_arg(archived.iter())?]).await?;
        }
    }
    Ok(())
}

async fn write_events(conn: &mut Conn<'_>, generation: i64, events: &[Decoded<'_>], written: &WrittenLines) -> Result<(), ProjectionError> {
    let ids: BTreeSet<Uuid> = events
        .iter()
        .filter_map(|d| match &d.stream {
            StreamId::Cart(id) => Some(*id.as_uuid()),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<CartRow> = conn.json_rows(CARTS_BY_IDS, &[Arg::Int(generation), ids_arg(ids.iter())?]).await?;
    // Only carts that already have a row can have lines; the carts a batch creates (all
    // but a few in a rebuild) need no lookup, nor do those whose lines this process wrote.
    let mut lines_by_cart: BTreeMap<Uuid, Vec<CartLineRow>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for row in &rows {
        match written.take(generation, row.id, row.version) {
            Some(lines) => {
                lines_by_cart.insert(row.id, lines);
            }
            None => unknown.push(row.id),
        }
    }
    if !unknown.is_empty() {
        let lines: Vec<CartLineRow> = conn.json_rows(LINES_BY_CARTS, &[Arg::Int(generation), ids_arg(unknown.iter())?]).await?;
        for line in lines {
            lines_by_cart.entry(line.cart_id).or_default().push(line);
        }
    }
    let mut carts: BTreeMap<Uuid, Entry> = BTreeMap::new();
    for row in &rows {
        let cart = to_domain(row, lines_by_cart.get(&row.id).map_or(&[], Vec::as_slice))?;
        carts.insert(
            row.id,
            Entry {
                cart,
                version: row.version,
                created_position: row.created_position,
                created_at: row.created_at,
                updated_at: row.updated_at,
                changed: false,
            },
        );
    }

    for decoded in events {
        let (StreamId::Cart(id), AnyEvent::Cart(event)) = (&decoded.stream, &decoded.event) else {
            continue;
        };
        let recorded = decoded.recorded;
        let version = version(recorded);
        match carts.get_mut(id.as_uuid()) {
            Some(entry) if version <= entry.version => {}
            Some(entry) => {
                if let Some(cart) = domain::cart::evolve(Some(entry.cart.clone()), event) {
                    entry.cart = cart;
                }
                entry.version = version;
                entry.updated_at = recorded.recorded_at;
                entry.changed = true;
            }
            None => {
                // Only CartCreated starts a cart (the domain's evolve ignores anything else
                // on an empty stream, and so do we).
                if let Some(cart) = domain::cart::evolve(None, event) {
                    let at = recorded.recorded_at;
                    let created_position = crate::db::pos(recorded.position);
                    carts.insert(
                        *id.as_uuid(),
                        Entry {
                            cart,
                            version,
                            created_position,
                            created_at: at,
                            updated_at: at,
                            changed: true,
                        },
                    );
                } else if !matches!(event, CartEvent::CartCreated { .. }) {
                    tracing::warn!(stream = %recorded.stream_id, position = %recorded.position, "cart event before CartCreated ignored");
                }
            }
        }
    }

    for (id, entry) in carts.iter().filter(|(_, e)| !e.changed) {
        if let Some(lines) = lines_by_cart.remove(id) {
            written.put(generation, *id, entry.version, lines);
        }
    }
    let changed: Vec<(&Uuid, &Entry)> = carts.iter().filter(|(_, e)| e.changed).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut cart_rows = Vec::with_capacity(changed.len());
    // Only lines that differ from what is stored are written: an item added to a cart of
    // 90 lines writes one line, not 90.
    let mut line_rows = Vec::new();
    let mut tails = Vec::new();
    for (id, entry) in &changed {
        let cart = &entry.cart;
        cart_rows.push(CartRow {
            generation,
            id: **id,
            customer_id: cart.customer_id.as_str().to_owned(),
            status: status_str(cart.status).to_owned(),
            version: entry.version,
            item_count: i64::from(cart.item_count()),
            subtotal: cart.subtotal().minor_units(),
            order_id: cart.order_id.map(|o| *o.as_uuid()),
            created_position: entry.created_position,
            created_at: entry.created_at,
            updated_at: entry.updated_at,
        });
        let stored = lines_by_cart.get(*id).map_or(&[][..], Vec::as_slice);
        let mut lines = Vec::with_capacity(cart.lines.len());
        for (line_no, line) in cart.lines.iter().enumerate() {
            let row = CartLineRow {
                cart_id: **id,
                line_no: line_no as i64,
                sku: line.sku.as_str().to_owned(),
                name: line.name.clone(),
                quantity: i64::from(line.quantity),
                unit_price: line.unit_price.minor_units(),
                line_total: line.line_total().minor_units(),
            };
            if stored.get(line_no) != Some(&row) {
                line_rows.push(row.clone());
            }
            lines.push(row);
        }
        if stored.len() > cart.lines.len() {
            tails.push(Tail {
                cart_id: **id,
                keep: cart.lines.len() as i64,
            });
        }
        written.put(generation, **id, entry.version, lines);
    }
    conn.execute(UPSERT_CARTS, &[Arg::Int(generation), json_arg(&cart_rows)?]).await?;
    if !line_rows.is_empty() {
        conn.execute(UPSERT_LINES, &[Arg::Int(generation), json_arg(&line_rows)?]).await?;
    }
    if !tails.is_empty() {
        conn.execute(DELETE_TAILS, &[Arg::Int(generation), json_arg(&tails)?]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(cart: Uuid, n: usize) -> Vec<CartLineRow> {
        (0..n)
            .map(|i| CartLineRow {
                cart_id: cart,
                line_no: i as i64,
                sku: format!("sku-{i}"),
                name: "Item".to_owned(),
                quantity: 1,
                unit_price: 100,
                line_total: 100,
            })
            .collect()
    }

    #[test]
    fn written_lines_are_used_only_at_the_version_they_were_written_with() {
        let written = WrittenLines::default();
        let cart = Uuid::now_v7();
        written.put(1, cart, 3, lines(cart, 2));
        assert_eq!(written.take(1, cart, 4), None, "another version was stored since");
        assert_eq!(written.take(2, cart, 3), None, "another generation");
        assert_eq!(written.take(1, cart, 3), Some(lines(cart, 2)));
        assert_eq!(written.take(1, cart, 3), None, "taken: a failed batch leaves nothing behind");
        written.put(1, cart, 4, lines(cart, 3));
        assert_eq!(written.take(1, cart, 4), Some(lines(cart, 3)));
        assert_eq!(written.lock().weight, 1, "the taken entry's lines are gone, its key stays");
    }

    #[test]
    fn written_lines_stay_within_their_budget() {
        let written = WrittenLines::default();
        let carts: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for cart in &carts {
            written.put(1, *cart, 1, lines(*cart, WRITTEN_LINES_BUDGET / 2 - 1));
        }
        assert!(written.lock().weight <= WRITTEN_LINES_BUDGET);
        assert_eq!(written.take(1, carts[0], 1), None, "the oldest went first");
        assert!(written.take(1, carts[2], 1).is_some());
        // Taking and putting back the same cart does not grow the eviction order.
        for version in 2..100 {
            written.put(1, carts[2], version, lines(carts[2], 1));
            assert!(written.take(1, carts[2], version).is_some());
        }
        assert!(written.lock().order.len() <= 3);
    }

    #[test]
    fn carts_without_lines_are_bounded_too() {
        let written = WrittenLines::default();
        for _ in 0..WRITTEN_LINES_BUDGET + 10 {
            written.put(1, Uuid::now_v7(), 1, Vec::new());
        }
        let written = written.lock();
        assert_eq!(written.entries.len(), WRITTEN_LINES_BUDGET);
        assert_eq!(written.order.len(), WRITTEN_LINES_BUDGET);
    }
}

//! The read models as the API sees them: typed views and newest-first pages.
//!
//! Every query reads the generation its projection currently serves (see the migration:
//! rebuilds fill another generation and swap). A page's lines come from ONE extra query for
//! the whole page, never one per cart or order.
//!
//! Cursors are opaque to clients: URL-safe base64 of `<list>:<key>`, where the key is the
//! position of the event that created the row (carts, orders, notifications: unique, stable,
//! and the "newest first" order) or the sku (products). A cursor of another list, or anything
//! we did not hand out, is [`ProjectionError::BadCursor`].

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{CartStatus, OrderStatus};
use serde::Deserialize;
use store::Database;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{format_time, Arg, Conn, ReadConn, Sql};
use crate::error::ProjectionError;
use crate::model::analytics::{DayRow, SkuRow};
use crate::model::carts::{self, cart_json_lite, cart_json_pg, CartLineRow, CartRow};
use crate::model::notifications::{notification_json_lite, notification_json_pg, NotificationRow};
use crate::model::orders::{self, order_json_lite, order_json_pg, OrderLineRow, OrderRow};
use crate::model::products::{product_json_lite, product_json_pg, ProductRow};
use crate::model::{ids_arg, to_u32};

/// One page of a list: each item with the cursor that continues after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<(String, T)>,
    pub has_next_page: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CartView {
    pub id: Uuid,
    pub customer_id: String,
    pub status: CartStatus,
    /// Number of events in the cart's stream.
    pub version: u64,
    pub lines: Vec<CartLineView>,
    pub item_count: u32,
    pub subtotal: i64,
    pub order_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CartLineView {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
    pub line_total: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderView {
    pub id: Uuid,
    pub cart_id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    pub lines: Vec<OrderLineView>,
    pub total: i64,
    pub version: u64,
    pub placed_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The reason given when the order was cancelled, if any.
    pub cancel_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderLineView {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
    pub line_total: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub on_hand: u32,
    pub reserved: u32,
    pub available: u32,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NotificationView {
    pub id: Uuid,
    pub customer_id: String,
    /// ORDER_PLACED, ORDER_SHIPPED, ORDER_CANCELLED.
    pub kind: String,
    pub message: String,
    pub order_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// What the analytics read model says (see `model::analytics` for the choice).
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyticsView {
    /// Most added first.
    pub skus: Vec<SkuStats>,
    /// Newest day first.
    pub days: Vec<DayStats>,
    /// Carts still open.
    pub open_carts: u64,
    /// Open carts with at least one item and no change for longer than asked.
    pub abandoned_carts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkuStats {
    pub sku: String,
    pub add_events: u64,
    pub units_added: u64,
    pub units_ordered: u64,
    pub revenue_ordered: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayStats {
    /// UTC, YYYY-MM-DD.
    pub day: String,
    pub carts_created: u64,
    pub carts_checked_out: u64,
    pub orders_placed: u64,
    pub orders_shipped: u64,
    pub orders_cancelled: u64,
    pub revenue_placed: i64,
}

/// Queries over the read models. Cheap to clone.
#[derive(Clone)]
pub struct ReadModels {
    db: Database,
}

macro_rules! serving {
    ($name:literal) => {
        concat!("(select generation from projection_checkpoints where name = '", $name, "')")
    };
}

/// `cart(id)` on SQLite: the cart's object with a `lines` array, which `CartWithLines`
/// reads back (one statement).
const CART_BY_ID_LITE: &str = concat!(
    "select json_object('cart', ",
    cart_json_lite!(),
    ", 'lines', json(coalesce((select json_group_array(json_object('cart_id', l.cart_id, 'line_no', l.line_no, 'sku', l.sku, \
       'name', l.name, 'quantity', l.quantity, 'unit_price', l.unit_price, 'line_total', l.line_total)) \
       from (select * from cart_lines l where l.generation = c.generation and l.cart_id = c.id order by l.line_no) l), '[]')))
       from carts c where c.generation = ",
    serving!("carts"),
    " and c.id = $1"
);

/// `cart(id)`, the hottest read, on Postgres: plain columns, one row per line, rather than
/// JSON built by Postgres like the other queries: building the JSON cost Postgres 60% more
/// CPU per read than this (perf, bench reads at 32 clients).
const CART_BY_ID_PG: &str = concat!(
    "select c.generation, c.id, c.customer_id, c.status, c.version, c.item_count, c.subtotal, c.order_id,
            c.created_position, c.created_at, c.updated_at,
            l.line_no, l.sku, l.name, l.quantity, l.unit_price, l.line_total
       from carts c left join cart_lines l on l.generation = c.generation and l.cart_id = c.id
      where c.generation = ",
    serving!("carts"),
    " and c.id = $1 order by l.line_no"
);

async fn cart_by_id_pg(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Option<CartView>, ProjectionError> {
    use sqlx::Row;
    let rows = sqlx::query(CART_BY_ID_PG).bind(id).fetch_all(conn).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let cart = CartRow {
        generation: first.try_get("generation")?,
        id: first.try_get("id")?,
        customer_id: first.try_get("customer_id")?,
        status: first.try_get("status")?,
        version: first.try_get("version")?,
        item_count: first.try_get("item_count")?,
        subtotal: first.try_get("subtotal")?,
        order_id: first.try_get("order_id")?,
        created_position: first.try_get("created_position")?,
        created_at: first.try_get("created_at")?,
        updated_at: first.try_get("updated_at")?,
    };
    let mut lines = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(line_no) = row.try_get::<Option<i64>, _>("line_no")? else {
            continue;
        };
        lines.push(CartLineRow {
            cart_id: id,
            line_no,
            sku: row.try_get("sku")?,
            name: row.try_get("name")?,
            quantity: row.try_get("quantity")?,
            unit_price: row.try_get("unit_price")?,
            line_total: row.try_get("line_total")?,
        });
    }
    cart_view(cart, lines).map(Some)
}

/// The row of `CART_BY_ID_LITE`.
#[derive(serde::Deserialize)]
struct CartWithLines {
    cart: CartRow,
    lines: Vec<CartLineRow>,
}

const CARTS_OF: Sql = Sql {
    pg: concat!(
        "select ",
        cart_json_pg!(),
        " from carts c where c.generation = ",
        serving!("carts"),
        " and c.customer_id = $1 and ($2::text is null or c.status = $2) and ($3::bigint is null or c.created_position < $3)
         order by c.created_position desc limit $4"
    ),
    lite: concat!(
        "select ",
        cart_json_lite!(),
        " from carts c where c.generation = ",
        serving!("carts"),
        " and c.customer_id = $1 and ($2 is null or c.status = $2) and ($3 is null or c.created_position < $3)
         order by c.created_position desc limit $4"
    ),
};

const ORDER_BY_ID: Sql = Sql {
    pg: concat!(
        "select ",
        order_json_pg!(),
        " from orders o where o.generation = ",
        serving!("orders"),
        " and o.id = $1::uuid"
    ),
    lite: concat!(
        "select ",
        order_json_lite!(),
        " from orders o where o.generation = ",
        serving!("orders"),
        " and o.id = $1"
    ),
};

const ORDERS_OF: Sql = Sql {
    pg: concat!(
        "select ",
        order_json_pg!(),
        " from orders o where o.generation = ",
        serving!("orders"),
        " and o.customer_id = $1 and ($2::bigint is null or o.placed_position < $2) order by o.placed_position desc limit $3"
    ),
    lite: concat!(
        "select ",
        order_json_lite!(),
        " from orders o where o.generation = ",
        serving!("orders"),
        " and o.customer_id = $1 and ($2 is null or o.placed_position < $2) order by o.placed_position desc limit $3"
    ),
};

const PRODUCT_BY_SKU: Sql = Sql {
    pg: concat!(
        "select ",
        product_json_pg!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and p.sku = $1"
    ),
    lite: concat!(
        "select ",
        product_json_lite!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and p.sku = $1"
    ),
};

const PRODUCTS: Sql = Sql {
    pg: concat!(
        "select ",
        product_json_pg!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and ($1::text is null or p.sku > $1) order by p.sku limit $2"
    ),
    lite: concat!(
        "select ",
        product_json_lite!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and ($1 is null or p.sku > $1) order by p.sku limit $2"
    ),
};

const NOTIFICATIONS_OF: Sql = Sql {
    pg: concat!(
        "select ",
        notification_json_pg!(),
        " from notifications n where n.generation = ",
        serving!("notifications"),
        " and n.customer_id = $1 and ($2::bigint is null or n.created_position < $2) order by n.created_position desc limit $3"
    ),
    lite: concat!(
        "select ",
        notification_json_lite!(),
        " from notifications n where n.generation = ",
        serving!("notifications"),
        " and n.customer_id = $1 and ($2 is null or n.created_position < $2) order by n.created_position desc limit $3"
    ),
};

const TOP_SKUS: Sql = Sql {
    pg: concat!(
        "select json_build_object('sku', s.sku, 'add_events', s.add_events, 'units_added', s.units_added, \
         'units_ordered', s.units_ordered, 'revenue_ordered', s.revenue_ordered)::text
           from analytics_skus s where s.generation = ",
        serving!("analytics"),
        " order by s.units_added desc, s.sku limit $1"
    ),
    lite: concat!(
        "select json_object('sku', s.sku, 'add_events', s.add_events, 'units_added', s.units_added, \
         'units_ordered', s.units_ordered, 'revenue_ordered', s.revenue_ordered)
           from analytics_skus s where s.generation = ",
        serving!("analytics"),
        " order by s.units_added desc, s.sku limit $1"
    ),
};

const LAST_DAYS: Sql = Sql {
    pg: concat!(
        "select json_build_object('day', d.day, 'carts_created', d.carts_created, 'carts_checked_out', d.carts_checked_out, \
         'orders_placed', d.orders_placed, 'orders_shipped', d.orders_shipped, 'orders_cancelled', d.orders_cancelled, \
         'revenue_placed', d.revenue_placed)::text
           from analytics_daily d where d.generation = ",
        serving!("analytics"),
        " order by d.day desc limit $1"
    ),
    lite: concat!(
        "select json_object('day', d.day, 'carts_created', d.carts_created, 'carts_checked_out', d.carts_checked_out, \
         'orders_placed', d.orders_placed, 'orders_shipped', d.orders_shipped, 'orders_cancelled', d.orders_cancelled, \
         'revenue_placed', d.revenue_placed)
           from analytics_daily d where d.generation = ",
        serving!("analytics"),
        " order by d.day desc limit $1"
    ),
};

const OPEN_CARTS: Sql = Sql {
    pg: concat!(
        "select json_build_object('open', count(*), 'abandoned', coalesce(sum(case when c.item_count > 0 and c.updated_at < $1::timestamptz then 1 else 0 end), 0))::text
           from carts c where c.generation = ",
        serving!("carts"),
        " and c.status = 'OPEN'"
    ),
    lite: concat!(
        "select json_object('open', count(*), 'abandoned', coalesce(sum(case when c.item_count > 0 and c.updated_at < $1 then 1 else 0 end), 0))
           from carts c where c.generation = ",
        serving!("carts"),
        " and c.status = 'OPEN'"
    ),
};

#[derive(Deserialize)]
struct CartCounts {
    open: i64,
    abandoned: i64,
}

impl ReadModels {
    pub fn new(db: Database) -> Self {
        ReadModels { db }
    }

    async fn conn(&self) -> Result<ReadConn, ProjectionError> {
        ReadConn::acquire(&self.db).await
    }

    /// A cart with its lines, or `None` when the read model has no such cart (yet).
    pub async fn cart(&self, id: Uuid) -> Result<Option<CartView>, ProjectionError> {
        let mut conn = self.conn().await?;
        let mut conn = conn.conn();
        let text: Option<String> = match &mut conn {
            Conn::Pg(pg) => return cart_by_id_pg(pg, id).await,
            Conn::Lite(lite) => {
                sqlx::query_scalar(CART_BY_ID_LITE)
                    .bind(id.to_string())
                    .fetch_optional(&mut **lite)
                    .await?
            }
        };
        let Some(text) = text else { return Ok(None) };
        let row: CartWithLines = serde_json::from_str(&text).map_err(|e| ProjectionError::Corrupt(format!("{e}: {text}")))?;
        cart_view(row.cart, row.lines).map(Some)
    }

    /// A customer's carts, newest first, optionally of one status.
    pub async fn carts_of(
        &self,
        customer: &str,
        status: Option<CartStatus>,
        first: usize,
        after: Option<&str>,
    ) -> Result<Page<CartView>, ProjectionError> {
        let after = after.map(|c| decode_position_cursor("cart", c)).transpose()?;
        let mut conn = self.conn().await?;
        let mut conn = conn.conn();
        let args = [
            Arg::Text(customer.to_owned()),
            Arg::OptText(status.map(|s| carts::status_str(s).to_owned())),
            Arg::OptInt(after),
            Arg::Int(limit(first)),
        ];
        let rows: Vec<CartRow> = conn.json_rows(CARTS_OF, &args).await?;
        let has_next_page = rows.len() > first;
        let rows: Vec<CartRow> = rows.into_iter().take(first).collect();
        let cursors: Vec<String> = rows.iter().map(|r| encode_cursor("cart", &r.created_position.to_string())).collect();
        let views = cart_views(&mut conn, rows).await?;
        Ok(Page {
            items: cursors.into_iter().zip(views).collect(),
            has_next_page,
        })
    }

    pub async fn order(&self, id: Uuid) -> Result<Option<OrderView>, ProjectionError> {
        let mut conn = self.conn().await?;
        let mut conn = conn.conn();
        let rows: Vec<OrderRow> = conn.json_rows(ORDER_BY_ID, &[Arg::Text(id.to_string())]).await?;
        Ok(order_views(&mut conn, rows).await?.into_iter().next())
    }

    /// A customer's orders, newest first.
    pub async fn orders_of(&self, customer: &str, first: usize, after: Option<&str>) -> Result<Page<OrderView>, ProjectionError> {
        let after = after.map(|c| decode_position_cursor("order", c)).transpose()?;
        let mut conn = self.conn().await?;
        let mut conn = conn.conn();
        let rows: Vec<OrderRow> = conn
            .json_rows(ORDERS_OF, &[Arg::Text(customer.to_owned()), Arg::OptInt(after), Arg::Int(limit(first))])
            .await?;
        let has_next_page = rows.len() > first;
        let rows: Vec<OrderRow> = rows.into_iter().take(first).collect();
        let cursors: Vec<String> = rows.iter().map(|r| encode_cursor("order", &r.placed_position.to_string())).collect();
        let views = order_views(&mut conn, rows).await?;
        Ok(Page {
            items: cursors.into_iter().zip(views).collect(),
            has_next_page,
        })
    }

    pub async fn product(&self, sku: &str) -> Result<Option<ProductView>, ProjectionError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ProductRow> = conn.conn().json_rows(PRODUCT_BY_SKU, &[Arg::Text(sku.to_owned())]).await?;
        rows.into_iter().next().map(product_view).transpose()
    }

    /// The catalog by sku.
    pub async fn products(&self, first: usize, after: Option<&str>) -> Result<Page<ProductView>, ProjectionError> {
        let after = after.map(|c| decode_cursor("product", c)).transpose()?;
        let mut conn = self.conn().await?;
        let rows: Vec<ProductRow> = conn.conn().json_rows(PRODUCTS, &[Arg::OptText(after), Arg::Int(limit(first))]).await?;
        let has_next_page = rows.len() > first;
        let items = rows
            .into_iter()
            .take(first)
            .map(|row| Ok((encode_cursor("product", &row.sku), product_view(row)?)))
            .collect::<Result<_, ProjectionError>>()?;
        Ok(Page { items, has_next_page })
    }

    /// A customer's notifications, newest first.
    pub async fn notifications_of(&self, customer: &str, first: usize, after: Option<&str>) -> Result<Page<NotificationView>, ProjectionError> {
        let after = after.map(|c| decode_position_cursor("notification", c)).transpose()?;
        let mut conn = self.conn().await?;
        let rows: Vec<NotificationRow> = conn
            .conn()
            .json_rows(
                NOTIFICATIONS_OF,
                &[Arg::Text(customer.to_owned()), Arg::OptInt(after), Arg::Int(limit(first))],
            )
            .await?;
        let has_next_page = rows.len() > first;
        let items = rows
            .into_iter()
            .take(first)
            .map(|row| {
                let cursor = encode_cursor("notification", &row.created_position.to_string());
                let view = NotificationView {
                    id: row.id,
                    customer_id: row.customer_id,
                    kind: row.kind,
                    message: row.message,
                    order_id: row.order_id,
                    created_at: row.created_at,
                };
                (cursor, view)
            })
            .collect();
        Ok(Page { items, has_next_page })
    }

    /// The operator's dashboard: the `top_skus` most added skus, the last `days` days, and
    /// the open carts, of which those with items and no change for `abandoned_after` count
    /// as abandoned.
    pub async fn analytics(&self, top_skus: usize, days: usize, abandoned_after: Duration) -> Result<AnalyticsView, ProjectionError> {
        let mut conn = self.conn().await?;
        let mut conn = conn.conn();
        let skus: Vec<SkuRow> = conn.json_rows(TOP_SKUS, &[Arg::Int(count(top_skus))]).await?;
        let day_rows: Vec<DayRow> = conn.json_rows(LAST_DAYS, &[Arg::Int(count(days))]).await?;
        let cutoff = OffsetDateTime::now_utc() - abandoned_after;
        let counts: Vec<CartCounts> = conn.json_rows(OPEN_CARTS, &[Arg::Text(format_time(cutoff))]).await?;
        let counts = counts.into_iter().next().unwrap_or(CartCounts { open: 0, abandoned: 0 });
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(AnalyticsView {
            skus: skus
                .into_iter()
                .map(|s| SkuStats {
                    sku: s.sku,
                    add_events: n(s.add_events),
                    units_added: n(s.units_added),
                    units_ordered: n(s.units_ordered),
                    revenue_ordered: s.revenue_ordered,
                })
                .collect(),
            days: day_rows
                .into_iter()
                .map(|d| DayStats {
                    day: d.day,
                    carts_created: n(d.carts_created),
                    carts_checked_out: n(d.carts_checked_out),
                    orders_placed: n(d.orders_placed),
                    orders_shipped: n(d.orders_shipped),
                    orders_cancelled: n(d.orders_cancelled),
                    revenue_placed: d.revenue_placed,
                })
                .collect(),
            open_carts: n(counts.open),
            abandoned_carts: n(counts.abandoned),
        })
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row more than asked, to know whether there is a next page.
fn limit(first: usize) -> i64 {
    i64::try_from(first).unwrap_or(i64::MAX - 1).saturating_add(1)
}

fn encode_cursor(list: &str, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}:{key}"))
}

fn decode_cursor(list: &str, cursor: &str) -> Result<String, ProjectionError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ProjectionError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| ProjectionError::BadCursor)?;
    let (prefix, key) = text.split_once(':').ok_or(ProjectionError::BadCursor)?;
    if prefix != list || key.is_empty() {
        return Err(ProjectionError::BadCursor);
    }
    Ok(key.to_owned())
}

fn decode_position_cursor(list: &str, cursor: &str) -> Result<i64, ProjectionError> {
    decode_cursor(list, cursor)?
        .parse::<i64>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or(ProjectionError::BadCursor)
}

fn u64_of(value: i64, what: &str) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt(format!("{what} {value} out of range")))
}

/// Views of cart rows with their lines, loaded in one query for all of them.
async fn cart_views(conn: &mut Conn<'_>, rows: Vec<CartRow>) -> Result<Vec<CartView>, ProjectionError> {
    let Some(generation) = rows.first().map(|r| r.generation) else {
        return Ok(Vec::new());
    };
    let lines: Vec<CartLineRow> = conn
        .json_rows(carts::LINES_BY_CARTS, &[Arg::Int(generation), ids_arg(rows.iter().map(|r| r.id))?])
        .await?;
    let mut by_cart: HashMap<Uuid, Vec<CartLineRow>> = HashMap::new();
    for line in lines {
        by_cart.entry(line.cart_id).or_default().push(line);
    }
    rows.into_iter()
        .map(|row| {
            let lines = by_cart.remove(&row.id).unwrap_or_default();
            cart_view(row, lines)
        })
        .collect()
}

/// A cart row and its lines (in line order) as the view the API renders.
fn cart_view(row: CartRow, lines: Vec<CartLineRow>) -> Result<CartView, ProjectionError> {
    let lines = lines
        .into_iter()
        .map(|line| {
            Ok(CartLineView {
                sku: line.sku,
                name: line.name,
                quantity: to_u32(line.quantity, "quantity")?,
                unit_price: line.unit_price,
                line_total: line.line_total,
            })
        })
        .collect::<Result<_, ProjectionError>>()?;
    Ok(CartView {
        id: row.id,
        customer_id: row.customer_id,
        status: carts::parse_status(&row.status)?,
        version: u64_of(row.version, "version")?,
        lines,
        item_count: to_u32(row.item_count, "item count")?,
        subtotal: row.subtotal,
        order_id: row.order_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

async fn order_views(conn: &mut Conn<'_>, rows: Vec<OrderRow>) -> Result<Vec<OrderView>, ProjectionError> {
    let Some(generation) = rows.first().map(|r| r.generation) else {
        return Ok(Vec::new());
    };
    let lines: Vec<OrderLineRow> = conn
        .json_rows(orders::LINES_BY_ORDERS, &[Arg::Int(generation), ids_arg(rows.iter().map(|r| r.id))?])
        .await?;
    let mut by_order: HashMap<Uuid, Vec<OrderLineView>> = HashMap::new();
    for line in lines {
        by_order.entry(line.order_id).or_default().push(OrderLineView {
            sku: line.sku,
            name: line.name,
            quantity: to_u32(line.quantity, "quantity")?,
            unit_price: line.unit_price,
            line_total: line.line_total,
        });
    }
    rows.into_iter()
        .map(|row| {
            Ok(OrderView {
                id: row.id,
                cart_id: row.cart_id,
                customer_id: row.customer_id,
                status: orders::parse_status(&row.status)?,
                lines: by_order.remove(&row.id).unwrap_or_default(),
                total: row.total,
                version: u64_of(row.version, "version")?,
                placed_at: row.placed_at,
                updated_at: row.updated_at,
                cancel_reason: row.cancel_reason,
            })
        })
        .collect()
}

fn product_view(row: ProductRow) -> Result<ProductView, ProjectionError> {
    Ok(ProductView {
        sku: row.sku,
        name: row.name,
        price: row.price,
        on_hand: to_u32(row.on_hand, "on hand")?,
        reserved: to_u32(row.reserved, "reserved")?,
        available: to_u32(row.available, "available")?,
        version: u64_of(row.version, "version")?,
    })
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

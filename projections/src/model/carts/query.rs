//! The carts read model as the API sees it: [`CartView`] and its queries.

use std::collections::HashMap;

use domain::CartStatus;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{cart_json_lite, cart_json_pg, parse_status, status_str, CartLineRow, CartRow, LINES_BY_CARTS};
use crate::db::{Arg, Conn, Sql};
use crate::error::ProjectionError;
use crate::model::read_models::{decode_position_cursor, encode_cursor, limit, serving, u64_of, LineView, Page, ReadModels};
use crate::model::{ids_arg, to_u32};

#[derive(Clone, Debug, PartialEq)]
pub struct CartView {
    pub id: Uuid,
    pub customer_id: String,
    pub status: CartStatus,
    /// Number of events in the cart's stream.
    pub version: u64,
    pub lines: Vec<LineView>,
    pub item_count: u32,
    pub subtotal: i64,
    pub order_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
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

impl ReadModels {
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
            Arg::OptText(status.map(|s| status_str(s).to_owned())),
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
}

/// Views of cart rows with their lines, loaded in one query for all of them.
async fn cart_views(conn: &mut Conn<'_>, rows: Vec<CartRow>) -> Result<Vec<CartView>, ProjectionError> {
    let Some(generation) = rows.first().map(|r| r.generation) else {
        return Ok(Vec::new());
    };
    let lines: Vec<CartLineRow> = conn
        .json_rows(LINES_BY_CARTS, &[Arg::Int(generation), ids_arg(rows.iter().map(|r| r.id))?])
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
            Ok(LineView {
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
        status: parse_status(&row.status)?,
        version: u64_of(row.version, "version")?,
        lines,
        item_count: to_u32(row.item_count, "item count")?,
        subtotal: row.subtotal,
        order_id: row.order_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

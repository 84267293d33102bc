//! The orders read model as the API sees it: [`OrderView`] and its queries.

use std::collections::HashMap;

use domain::OrderStatus;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{order_json_lite, order_json_pg, parse_status, OrderLineRow, OrderRow, LINES_BY_ORDERS};
use crate::db::{Arg, Conn, Sql};
use crate::error::ProjectionError;
use crate::model::read_models::{decode_position_cursor, encode_cursor, limit, serving, u64_of, LineView, Page, ReadModels};
use crate::model::{ids_arg, to_u32};

#[derive(Clone, Debug, PartialEq)]
pub struct OrderView {
    pub id: Uuid,
    pub cart_id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    pub lines: Vec<LineView>,
    pub total: i64,
    pub version: u64,
    pub placed_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The reason given when the order was cancelled, if any.
    pub cancel_reason: Option<String>,
    /// The shipping address and contact email, sealed; `None` when the order has none or
    /// they were erased.
    pub personal_data: Option<domain::SealedPersonalData>,
    /// The customer erased their personal data after placing this order.
    pub personal_data_erased: bool,
}

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

impl ReadModels {
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
}

async fn order_views(conn: &mut Conn<'_>, rows: Vec<OrderRow>) -> Result<Vec<OrderView>, ProjectionError> {
    let Some(generation) = rows.first().map(|r| r.generation) else {
        return Ok(Vec::new());
    };
    let lines: Vec<OrderLineRow> = conn
        .json_rows(LINES_BY_ORDERS, &[Arg::Int(generation), ids_arg(rows.iter().map(|r| r.id))?])
        .await?;
    let mut by_order: HashMap<Uuid, Vec<LineView>> = HashMap::new();
    for line in lines {
        by_order.entry(line.order_id).or_default().push(LineView {
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
                status: parse_status(&row.status)?,
                lines: by_order.remove(&row.id).unwrap_or_default(),
                total: row.total,
                version: u64_of(row.version, "version")?,
                placed_at: row.placed_at,
                updated_at: row.updated_at,
                cancel_reason: row.cancel_reason,
                personal_data: row.personal_data.map(domain::SealedPersonalData::new),
                personal_data_erased: row.personal_data_erased,
            })
        })
        .collect()
}

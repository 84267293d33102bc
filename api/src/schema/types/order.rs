//! `Order`: from the orders read model or an order's state.

use async_graphql::{Context, Enum, Object};
use uuid::Uuid;

use super::line::OrderLine;
use super::personal_data::{Address, Sealed};
use super::{recorded_at, Money, Timestamps};
use crate::error::ApiError;
use crate::schema::numbers::to_int;
use crate::schema::scalars::{DateTime, UuidScalar};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(name = "OrderStatus")]
pub enum OrderStatus {
    /// Placed; stock is reserved.
    Placed,
    /// Fulfilment has picked the order up.
    Preparing,
    Shipped,
    /// Cancelled; its reserved stock is released.
    Cancelled,
}

impl From<domain::OrderStatus> for OrderStatus {
    fn from(s: domain::OrderStatus) -> Self {
        match s {
            domain::OrderStatus::Placed => OrderStatus::Placed,
            domain::OrderStatus::Preparing => OrderStatus::Preparing,
            domain::OrderStatus::Shipped => OrderStatus::Shipped,
            domain::OrderStatus::Cancelled => OrderStatus::Cancelled,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Order {
    pub id: Uuid,
    pub cart_id: Uuid,
    pub customer_id: String,
    pub status: domain::OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: i64,
    pub version: u64,
    pub times: Timestamps,
    pub personal_data: Sealed,
}

impl Order {
    pub fn from_state(order: &domain::Order, version: u64, times: Timestamps) -> Self {
        Order {
            id: *order.id.as_uuid(),
            cart_id: *order.cart_id.as_uuid(),
            customer_id: order.customer_id.as_str().to_owned(),
            status: order.status,
            lines: order.lines.iter().map(OrderLine::from).collect(),
            total: order.total.minor_units(),
            version,
            times,
            personal_data: Sealed::new(order.customer_id.as_str(), order.personal_data.clone(), false),
        }
    }

    fn stream_id(&self) -> String {
        domain::OrderId::from_uuid(self.id).stream_id()
    }
}

impl From<projections::OrderView> for Order {
    fn from(v: projections::OrderView) -> Self {
        Order {
            personal_data: Sealed::new(&v.customer_id, v.personal_data, v.personal_data_erased),
            id: v.id,
            cart_id: v.cart_id,
            customer_id: v.customer_id,
            status: v.status,
            lines: v.lines.into_iter().map(OrderLine::from).collect(),
            total: v.total,
            version: v.version,
            times: Timestamps::known(v.placed_at, v.updated_at),
        }
    }
}

#[Object]
impl Order {
    async fn id(&self) -> UuidScalar {
        self.id.into()
    }

    async fn cart_id(&self) -> UuidScalar {
        self.cart_id.into()
    }

    async fn customer_id(&self) -> &str {
        &self.customer_id
    }

    async fn status(&self) -> OrderStatus {
        self.status.into()
    }

    async fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    async fn total(&self) -> Money {
        Money(self.total)
    }

    async fn version(&self) -> i32 {
        to_int(self.version)
    }

    /// Where the order ships; null when none was given or it was erased.
    async fn shipping_address(&self, ctx: &Context<'_>) -> Result<Option<Address>, ApiError> {
        let data = self.personal_data.data(ctx).await?;
        Ok(data.and_then(|d| d.shipping_address.as_ref()).map(Address::from))
    }

    /// Whom to tell about the order; null when none was given or it was erased.
    async fn contact_email(&self, ctx: &Context<'_>) -> Result<Option<String>, ApiError> {
        let data = self.personal_data.data(ctx).await?;
        Ok(data.and_then(|d| d.contact_email.clone()))
    }

    /// The customer erased their personal data after placing the order.
    async fn personal_data_erased(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        self.personal_data.erased(ctx).await
    }

    async fn placed_at(&self, ctx: &Context<'_>) -> Result<DateTime, ApiError> {
        match self.times.created {
            Some(t) => Ok(DateTime(t)),
            None => recorded_at(ctx, &self.stream_id(), 1).await,
        }
    }

    async fn updated_at(&self, ctx: &Context<'_>) -> Result<DateTime, ApiError> {
        match self.times.updated {
            Some(t) => Ok(DateTime(t)),
            None => recorded_at(ctx, &self.stream_id(), self.version).await,
        }
    }
}

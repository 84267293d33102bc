//! Queries: the read models for current state (optionally after waiting for a
//! position), the event store for past states (`cartAt`) and history.

use async_graphql::{Context, Object};

use commands::CartAggregate;

use super::connection::{CartConnection, NotificationConnection, OrderConnection, ProductConnection};
use super::numbers::non_negative;
use super::scalars::{DateTime, Position, UuidScalar};
use super::types::{Cart, CartStatus, Notification, Order, Product, ProjectionStatus, RecordedEvent};
use super::{admin, api, may_see, page_size, principal, state_as_of, wait_for};
use crate::error::ApiError;

pub struct Query;

#[Object]
impl Query {
    /// The signed-in customer.
    async fn me(&self, ctx: &Context<'_>) -> Result<Customer, ApiError> {
        Ok(Customer {
            id: principal(ctx)?.id.clone(),
        })
    }

    /// A cart from the read model. With minPosition, waits (up to a bounded time, then
    /// CONSISTENCY_TIMEOUT) until the read model has applied that position.
    async fn cart(&self, ctx: &Context<'_>, id: UuidScalar, min_position: Option<Position>) -> Result<Option<Cart>, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        wait_for(api, "carts", min_position).await?;
        let cart = api.read().cart(id.0).await?;
        if cart.is_none() {
            archived_cart(api, id.0).await?;
        }
        Ok(cart.filter(|c| may_see(who, &c.customer_id)).map(Cart::from))
    }

    /// A cart as it was, rebuilt from its events up to a version or a moment (give one
    /// of the two).
    async fn cart_at(&self, ctx: &Context<'_>, id: UuidScalar, version: Option<i32>, at: Option<DateTime>) -> Result<Option<Cart>, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let stream_id = domain::CartId::from_uuid(id.0).stream_id();
        let (loaded, times) = match (version, at) {
            (Some(version), None) => {
                let version = non_negative("version", version)?;
                state_as_of::<CartAggregate>(api, &stream_id, |e| e.version <= version).await?
            }
            (None, Some(at)) => state_as_of::<CartAggregate>(api, &stream_id, |e| e.recorded_at <= at.0).await?,
            _ => return Err(ApiError::BadUserInput("give exactly one of version and at".to_owned())),
        };
        let Some(cart) = loaded.state.filter(|c| may_see(who, c.customer_id.as_str())) else {
            return Ok(None);
        };
        Ok(Some(Cart::from_state(&cart, loaded.version, times)))
    }

    async fn order(&self, ctx: &Context<'_>, id: UuidScalar, min_position: Option<Position>) -> Result<Option<Order>, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        wait_for(api, "orders", min_position).await?;
        let order = api.read().order(id.0).await?;
        Ok(order.filter(|o| may_see(who, &o.customer_id)).map(Order::from))
    }

    async fn product(&self, ctx: &Context<'_>, sku: String) -> Result<Option<Product>, ApiError> {
        let sku = domain::Sku::parse(&sku)?;
        Ok(api(ctx)?.read().product(sku.as_str()).await?.map(Product::from))
    }

    #[graphql(complexity = "super::page_cost(first, 50, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<ProductConnection, ApiError> {
        let first = page_size(first, 50)?;
        let page = api(ctx)?.read().products(first, after.as_deref()).await?;
        Ok(ProductConnection::from_page(page, after.is_some(), Product::from))
    }

    /// Admin only.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionStatus>, ApiError> {
        admin(ctx)?;
        Ok(api(ctx)?.projections.statuses().await?.into_iter().map(ProjectionStatus).collect())
    }

    /// Admin only. The events of one stream (e.g. "cart-<uuid>", "order-<uuid>",
    /// "product-<sku>") with a version above afterVersion, oldest first, at most `first`
    /// (up to 100): page on with the last version read. An unknown stream has none.
    #[graphql(complexity = "super::page_cost(first, 50, child_complexity)")]
    async fn stream_events(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
        #[graphql(default = 0)] after_version: Option<i32>,
        #[graphql(default = 50)] first: Option<i32>,
    ) -> Result<Vec<RecordedEvent>, ApiError> {
        admin(ctx)?;
        if stream_id.is_empty() || stream_id.len() > 200 {
            return Err(ApiError::BadUserInput("streamId must be 1 to 200 characters".to_owned()));
        }
        let after = non_negative("afterVersion", after_version.unwrap_or(0))?;
        let first = page_size(first, 50)?;
        let events = api(ctx)?.store.read_stream(&stream_id, after + 1, first).await?;
        Ok(events.into_iter().map(RecordedEvent).collect())
    }
}

/// ARCHIVED when the cart was archived (#15); the read model has no row for it then. Only
/// asked when there is no row: a miss costs one primary-key probe. The tombstone keeps no
/// owner, so anyone signed in who knows the cart's id learns that it was archived, nothing
/// more.
async fn archived_cart(api: &crate::context::ApiContext, id: uuid::Uuid) -> Result<(), ApiError> {
    let stream = domain::CartId::from_uuid(id).stream_id();
    match api.store.archived_stream(&stream).await? {
        Some(tomb) => Err(ApiError::Archived {
            stream: tomb.stream_id,
            version: tomb.version,
        }),
        None => Ok(()),
    }
}

/// A customer's own carts, orders and notifications, newest first.
pub struct Customer {
    pub id: String,
}

#[Object]
impl Customer {
    async fn id(&self) -> &str {
        &self.id
    }

    /// Newest first.
    #[graphql(complexity = "super::page_cost(first, 20, child_complexity)")]
    async fn carts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        status: Option<CartStatus>,
    ) -> Result<CartConnection, ApiError> {
        let first = page_size(first, 20)?;
        let page = api(ctx)?
            .read()
            .carts_of(&self.id, status.map(Into::into), first, after.as_deref())
            .await?;
        Ok(CartConnection::from_page(page, after.is_some(), Cart::from))
    }

    /// Newest first.
    #[graphql(complexity = "super::page_cost(first, 20, child_complexity)")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<OrderConnection, ApiError> {
        let first = page_size(first, 20)?;
        let page = api(ctx)?.read().orders_of(&self.id, first, after.as_deref()).await?;
        Ok(OrderConnection::from_page(page, after.is_some(), Order::from))
    }

    /// Newest first.
    #[graphql(complexity = "super::page_cost(first, 20, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<NotificationConnection, ApiError> {
        let first = page_size(first, 20)?;
        let page = api(ctx)?.read().notifications_of(&self.id, first, after.as_deref()).await?;
        Ok(NotificationConnection::from_page(page, after.is_some(), Notification::from))
    }
}

//! The contract's object types. Each is built either from a read-model view (queries)
//! or from an aggregate's state right after a command or a replay (payloads, `cartAt`,
//! subscriptions); the GraphQL shape is the same either way.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, Interface, Object, SimpleObject};
use futures::future::try_join_all;
use time::OffsetDateTime;
use uuid::Uuid;

use domain::Money as DomainMoney;
use store::RecordedEvent as StoreEvent;

use super::connection::{CartEventConnection, CartEventEdge, PageInfo};
use super::scalars::{DateTime, Decimal, Json, Position, UuidScalar};
use super::{api, page_size, parse_version_cursor, to_int};
use crate::error::ApiError;

// ------------------------------------------------------------------ money

/// An amount in the store's one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money(pub i64);

#[Object]
impl Money {
    async fn amount(&self) -> Decimal {
        DomainMoney::from_minor(self.0).into()
    }

    async fn currency_code(&self) -> &'static str {
        domain::CURRENCY_CODE
    }
}

fn line_total(unit_price: i64, quantity: u32) -> i64 {
    unit_price.saturating_mul(i64::from(quantity))
}

// ------------------------------------------------------------------ catalog

#[derive(Clone, Debug)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub available: u32,
    pub version: u64,
}

#[Object]
impl Product {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn price(&self) -> Money {
        Money(self.price)
    }

    /// Units on hand minus units reserved by open orders.
    async fn available(&self) -> i32 {
        to_int(u64::from(self.available))
    }

    /// Number of events in the product's stream.
    async fn version(&self) -> i32 {
        to_int(self.version)
    }
}

impl From<projections::ProductView> for Product {
    fn from(v: projections::ProductView) -> Self {
        Product {
            sku: v.sku,
            name: v.name,
            price: v.price,
            available: v.available,
            version: v.version,
        }
    }
}

impl Product {
    pub fn from_state(product: &domain::Product, version: u64) -> Self {
        Product {
            sku: product.sku.as_str().to_owned(),
            name: product.name.clone(),
            price: product.price.minor_units(),
            available: product.available(),
            version,
        }
    }
}

// ------------------------------------------------------------------ carts

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(name = "CartStatus")]
pub enum CartStatus {
    Open,
    CheckedOut,
}

impl From<domain::CartStatus> for CartStatus {
    fn from(s: domain::CartStatus) -> Self {
        match s {
            domain::CartStatus::Open => CartStatus::Open,
            domain::CartStatus::CheckedOut => CartStatus::CheckedOut,
        }
    }
}

impl From<CartStatus> for domain::CartStatus {
    fn from(s: CartStatus) -> Self {
        match s {
            CartStatus::Open => domain::CartStatus::Open,
            CartStatus::CheckedOut => domain::CartStatus::CheckedOut,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CartLine {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
}

#[Object]
impl CartLine {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn quantity(&self) -> i32 {
        to_int(u64::from(self.quantity))
    }

    /// Price of one unit when it was put in the cart.
    async fn unit_price(&self) -> Money {
        Money(self.unit_price)
    }

    async fn line_total(&self) -> Money {
        Money(line_total(self.unit_price, self.quantity))
    }
}

/// When a stream's first and latest events were recorded. Known up front for views
/// and replays; for a command's payload read from the store only when asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timestamps {
    pub created: Option<OffsetDateTime>,
    pub updated: Option<OffsetDateTime>,
}

impl Timestamps {
    pub fn known(created: OffsetDateTime, updated: OffsetDateTime) -> Self {
        Timestamps {
            created: Some(created),
            updated: Some(updated),
        }
    }
}

/// The recorded time of one event of a stream (for payload timestamps).
async fn recorded_at(ctx: &Context<'_>, stream_id: &str, version: u64) -> Result<DateTime, ApiError> {
    let events = api(ctx)?.store.read_stream(stream_id, version.max(1), 1).await?;
    events
        .first()
        .map(|e| DateTime(e.recorded_at))
        .ok_or_else(|| ApiError::internal(format!("{stream_id} has no event {version}")))
}

#[derive(Clone, Debug)]
pub struct Cart {
    pub id: Uuid,
    pub customer_id: String,
    pub status: domain::CartStatus,
    /// The stream version this state includes.
    pub version: u64,
    pub lines: Vec<CartLine>,
    pub order_id: Option<Uuid>,
    pub times: Timestamps,
}

impl Cart {
    pub fn from_state(cart: &domain::Cart, version: u64, times: Timestamps) -> Self {
        Cart {
            id: *cart.id.as_uuid(),
            customer_id: cart.customer_id.as_str().to_owned(),
            status: cart.status,
            version,
            lines: cart
                .lines
                .iter()
                .map(|l| CartLine {
                    sku: l.sku.as_str().to_owned(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.minor_units(),
                })
                .collect(),
            order_id: cart.order_id.map(|o| *o.as_uuid()),
            times,
        }
    }

    fn stream_id(&self) -> String {
        domain::CartId::from_uuid(self.id).stream_id()
    }
}

impl From<projections::CartView> for Cart {
    fn from(v: projections::CartView) -> Self {
        Cart {
            id: v.id,
            customer_id: v.customer_id,
            status: v.status,
            version: v.version,
            lines: v
                .lines
                .into_iter()
                .map(|l| CartLine {
                    sku: l.sku,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            order_id: v.order_id,
            times: Timestamps::known(v.created_at, v.updated_at),
        }
    }
}

#[Object]
impl Cart {
    async fn id(&self) -> UuidScalar {
        self.id.into()
    }

    async fn customer_id(&self) -> &str {
        &self.customer_id
    }

    async fn status(&self) -> CartStatus {
        self.status.into()
    }

    /// Number of events in the cart's stream: the expectedVersion for the next command.
    async fn version(&self) -> i32 {
        to_int(self.version)
    }

    async fn lines(&self) -> &[CartLine] {
        &self.lines
    }

    /// Sum of the quantities of all lines.
    async fn item_count(&self) -> i32 {
        to_int(self.lines.iter().map(|l| u64::from(l.quantity)).sum())
    }

    async fn subtotal(&self) -> Money {
        Money(
            self.lines
                .iter()
                .fold(0i64, |sum, l| sum.saturating_add(line_total(l.unit_price, l.quantity))),
        )
    }

    /// Set once the cart is checked out.
    async fn order_id(&self) -> Option<UuidScalar> {
        self.order_id.map(UuidScalar)
    }

    async fn created_at(&self, ctx: &Context<'_>) -> Result<DateTime, ApiError> {
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

    /// Every event of this cart, oldest first: the audit trail. Read from the event
    /// store, up to the version this cart object shows.
    #[graphql(complexity = "super::page_cost(first, 50, child_complexity)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CartEventConnection, ApiError> {
        let first = page_size(first, 50)?;
        let after_version = after.as_deref().map(parse_version_cursor).transpose()?.unwrap_or(0);
        let remaining = self.version.saturating_sub(after_version);
        let want = remaining.min(first as u64);
        let mut edges = Vec::new();
        if want > 0 {
            let key = HistoryKey {
                stream_id: self.stream_id(),
                from_version: after_version + 1,
                limit: want as usize,
            };
            let recorded = history_loader(ctx)?.load_one(key).await?.unwrap_or_default();
            for event in recorded.iter().filter(|e| e.version <= self.version) {
                let node = CartEvent::from_recorded(event)?;
                edges.push(CartEventEdge {
                    cursor: event.version.to_string(),
                    node,
                });
            }
        }
        let has_next_page = after_version + (edges.len() as u64) < self.version;
        let page_info = PageInfo::new(&edges, |e| &e.cursor, has_next_page, after_version > 0);
        Ok(CartEventConnection { edges, page_info })
    }
}

// ------------------------------------------------------------------ history loader

/// One `Cart.history` page to read: a range of one cart stream. The range is part of
/// the key so each cart's page keeps its own `first`/`after`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistoryKey {
    pub stream_id: String,
    pub from_version: u64,
    pub limit: usize,
}

/// Reads the history pages of all carts resolved together (e.g. a page of `me.carts`)
/// in one batch instead of one store read per cart, one after the other. The store only
/// reads one stream per call, so a batch runs its per-stream reads concurrently.
pub struct HistoryLoader {
    store: std::sync::Arc<dyn store::EventStore>,
}

impl HistoryLoader {
    pub fn new(store: std::sync::Arc<dyn store::EventStore>) -> Self {
        HistoryLoader { store }
    }
}

impl Loader<HistoryKey> for HistoryLoader {
    type Value = Vec<StoreEvent>;
    type Error = ApiError;

    async fn load(&self, keys: &[HistoryKey]) -> Result<HashMap<HistoryKey, Self::Value>, Self::Error> {
        let reads = keys.iter().map(|key| async move {
            let events = self.store.read_stream(&key.stream_id, key.from_version, key.limit).await?;
            Ok::<_, ApiError>((key.clone(), events))
        });
        Ok(try_join_all(reads).await?.into_iter().collect())
    }
}

fn history_loader<'a>(ctx: &Context<'a>) -> Result<&'a DataLoader<HistoryLoader>, ApiError> {
    ctx.data_opt::<DataLoader<HistoryLoader>>()
        .ok_or_else(|| ApiError::internal("the schema was built without the history loader"))
}

// ------------------------------------------------------------------ cart events

/// What every cart event shows.
#[derive(Clone, Debug)]
pub struct EventMeta {
    pub position: store::Position,
    pub version: u64,
    pub occurred_at: OffsetDateTime,
    pub actor: String,
}

impl EventMeta {
    pub(crate) fn of(e: &StoreEvent) -> Self {
        EventMeta {
            position: e.position,
            version: e.version,
            occurred_at: e.recorded_at,
            actor: e.metadata.actor.clone(),
        }
    }
}

/// The four fields every `CartEvent` implementation has, plus its own.
macro_rules! cart_event {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* } { $($methods:tt)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            pub meta: EventMeta,
            $(pub $field: $ty,)*
        }

        $(#[$doc])*
        #[Object]
        impl $name {
            /// Position of the event in the global log.
            async fn position(&self) -> Position {
                self.meta.position.into()
            }

            /// Version of the cart once this event applied (the first event is 1).
            async fn version(&self) -> i32 {
                to_int(self.meta.version)
            }

            async fn occurred_at(&self) -> DateTime {
                self.meta.occurred_at.into()
            }

            /// Who caused it: a customer id, an admin id, or a worker's name.
            async fn actor(&self) -> &str {
                &self.meta.actor
            }

            $($methods)*
        }
    };
}

cart_event!(CartCreated { customer_id: String } {
    async fn customer_id(&self) -> &str {
        &self.customer_id
    }
});

cart_event!(
    /// Adding a sku already in the cart adds to its quantity; `quantity` is the amount this command added.
    ItemAddedToCart { sku: String, quantity: u32, unit_price: i64 } {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn quantity(&self) -> i32 {
        to_int(u64::from(self.quantity))
    }

    async fn unit_price(&self) -> Money {
        Money(self.unit_price)
    }
});

cart_event!(ItemQuantityChanged { sku: String, quantity: u32 } {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn quantity(&self) -> i32 {
        to_int(u64::from(self.quantity))
    }
});

cart_event!(ItemRemovedFromCart { sku: String } {
    async fn sku(&self) -> &str {
        &self.sku
    }
});

cart_event!(CartCleared {} {});

cart_event!(CartCheckedOut { order_id: Uuid } {
    async fn order_id(&self) -> UuidScalar {
        self.order_id.into()
    }
});

/// Something that happened to a cart.
#[derive(Clone, Debug, Interface)]
#[graphql(
    field(name = "position", ty = "Position", desc = "Position of the event in the global log."),
    field(
        name = "version",
        ty = "i32",
        desc = "Version of the cart once this event applied (the first event is 1)."
    ),
    field(name = "occurred_at", ty = "DateTime"),
    field(name = "actor", ty = "&str", desc = "Who caused it: a customer id, an admin id, or a worker's name.")
)]
pub enum CartEvent {
    CartCreated(CartCreated),
    ItemAddedToCart(ItemAddedToCart),
    ItemQuantityChanged(ItemQuantityChanged),
    ItemRemovedFromCart(ItemRemovedFromCart),
    CartCleared(CartCleared),
    CartCheckedOut(CartCheckedOut),
}

impl CartEvent {
    /// The GraphQL form of a recorded cart event (decoded, so upcast old schemas apply).
    pub fn from_recorded(recorded: &StoreEvent) -> Result<Self, ApiError> {
        let event = commands::decode::<domain::CartEvent>(recorded)?;
        Ok(Self::new(EventMeta::of(recorded), event))
    }

    pub fn new(meta: EventMeta, event: domain::CartEvent) -> Self {
        use domain::CartEvent as E;
        match event {
            E::CartCreated { customer_id, .. } => CartEvent::CartCreated(CartCreated {
                meta,
                customer_id: customer_id.into(),
            }),
            E::ItemAddedToCart {
                sku, quantity, unit_price, ..
            } => CartEvent::ItemAddedToCart(ItemAddedToCart {
                meta,
                sku: sku.into(),
                quantity,
                unit_price: unit_price.minor_units(),
            }),
            E::ItemQuantityChanged { sku, quantity } => CartEvent::ItemQuantityChanged(ItemQuantityChanged {
                meta,
                sku: sku.into(),
                quantity,
            }),
            E::ItemRemovedFromCart { sku } => CartEvent::ItemRemovedFromCart(ItemRemovedFromCart { meta, sku: sku.into() }),
            E::CartCleared {} => CartEvent::CartCleared(CartCleared { meta }),
            E::CartCheckedOut { order_id } => CartEvent::CartCheckedOut(CartCheckedOut {
                meta,
                order_id: *order_id.as_uuid(),
            }),
        }
    }
}

/// One event and the cart as it stood right after it.
#[derive(Clone, Debug, SimpleObject)]
pub struct CartChange {
    pub event: CartEvent,
    pub cart: Cart,
}

// ------------------------------------------------------------------ orders

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
pub struct OrderLine {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
}

#[Object]
impl OrderLine {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn quantity(&self) -> i32 {
        to_int(u64::from(self.quantity))
    }

    async fn unit_price(&self) -> Money {
        Money(self.unit_price)
    }

    async fn line_total(&self) -> Money {
        Money(line_total(self.unit_price, self.quantity))
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
}

impl Order {
    pub fn from_state(order: &domain::Order, version: u64, times: Timestamps) -> Self {
        Order {
            id: *order.id.as_uuid(),
            cart_id: *order.cart_id.as_uuid(),
            customer_id: order.customer_id.as_str().to_owned(),
            status: order.status,
            lines: order
                .lines
                .iter()
                .map(|l| OrderLine {
                    sku: l.sku.as_str().to_owned(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.minor_units(),
                })
                .collect(),
            total: order.total.minor_units(),
            version,
            times,
        }
    }

    fn stream_id(&self) -> String {
        domain::OrderId::from_uuid(self.id).stream_id()
    }
}

impl From<projections::OrderView> for Order {
    fn from(v: projections::OrderView) -> Self {
        Order {
            id: v.id,
            cart_id: v.cart_id,
            customer_id: v.customer_id,
            status: v.status,
            lines: v
                .lines
                .into_iter()
                .map(|l| OrderLine {
                    sku: l.sku,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
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

// ------------------------------------------------------------------ customer

#[derive(Clone, Debug)]
pub struct Notification(pub projections::NotificationView);

#[Object]
impl Notification {
    async fn id(&self) -> UuidScalar {
        self.0.id.into()
    }

    /// ORDER_PLACED, ORDER_SHIPPED, ORDER_CANCELLED, ...
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    async fn message(&self) -> &str {
        &self.0.message
    }

    async fn order_id(&self) -> Option<UuidScalar> {
        self.0.order_id.map(UuidScalar)
    }

    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
}

// ------------------------------------------------------------------ operations

/// State of one projection or event consumer.
#[derive(Clone, Debug)]
pub struct ProjectionStatus(pub projections::ProjectionStatus);

#[Object(name = "ProjectionStatus")]
impl ProjectionStatus {
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Last global position this projection has applied.
    async fn position(&self) -> Position {
        self.0.position.into()
    }

    /// Last global position in the log.
    async fn head_position(&self) -> Position {
        self.0.head_position.into()
    }

    /// RUNNING, CATCHING_UP, REBUILDING, STOPPED or FAILED.
    async fn state(&self) -> &str {
        self.0.state.as_str()
    }

    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
}

/// An event as stored, after upcasting to its current schema.
#[derive(Clone, Debug)]
pub struct RecordedEvent(pub StoreEvent);

#[Object]
impl RecordedEvent {
    async fn position(&self) -> Position {
        self.0.position.into()
    }

    async fn stream_id(&self) -> &str {
        &self.0.stream_id
    }

    async fn version(&self) -> i32 {
        to_int(self.0.version)
    }

    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    async fn schema_version(&self) -> i32 {
        self.0.schema_version
    }

    async fn data(&self) -> Json {
        Json(self.0.data.clone())
    }

    async fn metadata(&self) -> Json {
        Json(serde_json::to_value(&self.0.metadata).unwrap_or_default())
    }

    async fn occurred_at(&self) -> DateTime {
        self.0.recorded_at.into()
    }
}

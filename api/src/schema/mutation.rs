//! Mutations: turn GraphQL input into a command for the write model (the `commands`
//! crate, one [`Commands`] per process in the schema's data), which queues it in the
//! stream's mailbox, decides it on the state it loads (or caches), checks the cart's
//! owner on that same state, appends, and retries on conflicts when the client gave no
//! expected version. Payloads show
//! the state the command produced (folded from the aggregate, not read from a
//! projection) and the position of its last event.
//!
//! One file (about 500 lines): every root mutation field must sit in this one `#[Object]`
//! impl; what a field needs beyond a command lives beside it (`erasure`, `archive`).

use async_graphql::{Context, InputObject, Object, SimpleObject};
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use commands::{decode, CommandContext, Commands, Executed, OrderAggregate, ProductAggregate};
use domain::{CartCommand, CartId, OrderCommand, OrderId, PersonalData, ProductCommand, Sku};

use super::erasure::ErasurePayload;
use super::numbers::{non_negative, price};
use super::scalars::{Decimal, Position, UuidScalar};
use super::types::{Address, Cart, Order, Product, ProjectionStatus, Timestamps};
use super::{admin, api, fingerprint, principal, valid_idempotency_key};
use crate::auth::Principal;
use crate::context::{ApiContext, RequestId};
use crate::error::ApiError;
use crate::telemetry::ReceivedTrace;

pub struct Mutation;

// ------------------------------------------------------------------ inputs

#[derive(InputObject)]
pub struct CreateCartInput {
    /// Client-chosen id; a new one is generated when absent.
    pub cart_id: Option<UuidScalar>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct AddItemToCartInput {
    pub cart_id: UuidScalar,
    pub sku: String,
    /// 1 to 999; the line's total quantity may not exceed 999.
    pub quantity: i32,
    /// When given, the command fails with CONCURRENCY_CONFLICT unless the cart is at this version.
    pub expected_version: Option<i32>,
    /// Retrying with the same key returns the first outcome and appends nothing more.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ChangeItemQuantityInput {
    pub cart_id: UuidScalar,
    pub sku: String,
    /// 1 to 999.
    pub quantity: i32,
    pub expected_version: Option<i32>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveItemFromCartInput {
    pub cart_id: UuidScalar,
    pub sku: String,
    pub expected_version: Option<i32>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ClearCartInput {
    pub cart_id: UuidScalar,
    pub expected_version: Option<i32>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    pub cart_id: UuidScalar,
    pub expected_version: Option<i32>,
    pub idempotency_key: Option<String>,
    /// Sealed under the customer's data key; gone for good when they erase their personal data.
    pub shipping_address: Option<Address>,
    /// Where notifications about the order go. Sealed like the address.
    pub contact_email: Option<String>,
}

#[derive(InputObject)]
pub struct CancelOrderInput {
    pub order_id: UuidScalar,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ShipOrderInput {
    pub order_id: UuidScalar,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RegisterProductInput {
    /// 1 to 64 characters of A-Z a-z 0-9 - _ .
    pub sku: String,
    pub name: String,
    /// Greater than 0, at most 2 decimal places.
    pub price: Decimal,
    #[graphql(default = 0)]
    pub initial_stock: Option<i32>,
}

#[derive(InputObject)]
pub struct ChangeProductPriceInput {
    pub sku: String,
    pub price: Decimal,
}

#[derive(InputObject)]
pub struct ReceiveStockInput {
    pub sku: String,
    /// 1 or more.
    pub quantity: i32,
}

// ------------------------------------------------------------------ payloads

#[derive(SimpleObject)]
pub struct CartPayload {
    pub cart: Cart,
    /// Position of the last event the command appended: pass it as minPosition to read your own write.
    pub position: Position,
}

#[derive(SimpleObject)]
pub struct OrderPayload {
    pub order: Order,
    pub position: Position,
}

#[derive(SimpleObject)]
pub struct ProductPayload {
    pub product: Product,
    pub position: Position,
}

fn cart_payload(done: Executed<domain::CartState>) -> Result<CartPayload, ApiError> {
    let cart = done.state.as_ref().ok_or_else(|| ApiError::internal("a cart command left no cart"))?;
    Ok(CartPayload {
        cart: Cart::from_state(cart, done.version, Timestamps::default()),
        position: done.position.into(),
    })
}

fn order_payload(done: Executed<domain::OrderState>) -> Result<OrderPayload, ApiError> {
    let order = done.state.as_ref().ok_or_else(|| ApiError::internal("an order command left no order"))?;
    Ok(OrderPayload {
        order: Order::from_state(order, done.version, Timestamps::default()),
        position: done.position.into(),
    })
}

fn product_payload(done: Executed<domain::ProductState>) -> Result<ProductPayload, ApiError> {
    let product = done
        .state
        .as_ref()
        .ok_or_else(|| ApiError::internal("a product command left no product"))?;
    Ok(ProductPayload {
        product: Product::from_state(product, done.version),
        position: done.position.into(),
    })
}

// ------------------------------------------------------------------ authorization

/// The owner of a cart, from its first event (`CartCreated`); `None` when it does not exist.
pub(crate) async fn cart_owner(api: &ApiContext, cart_id: CartId) -> Result<Option<String>, ApiError> {
    let first = api.store.read_stream(&cart_id.stream_id(), 1, 1).await?;
    match first.first().map(decode::<domain::CartEvent>).transpose()? {
        Some(domain::CartEvent::CartCreated { customer_id, .. }) => Ok(Some(customer_id.into())),
        Some(_) => Err(ApiError::internal(format!("{} does not start with CartCreated", cart_id.stream_id()))),
        None => Ok(None),
    }
}

/// The owner of an order, from its first event (`OrderPlaced`).
pub(crate) async fn order_owner(api: &ApiContext, order_id: OrderId) -> Result<Option<String>, ApiError> {
    let first = api.store.read_stream(&order_id.stream_id(), 1, 1).await?;
    match first.first().map(decode::<domain::OrderEvent>).transpose()? {
        Some(domain::OrderEvent::OrderPlaced { customer_id, .. }) => Ok(Some(customer_id.into())),
        Some(_) => Err(ApiError::internal(format!("{} does not start with OrderPlaced", order_id.stream_id()))),
        None => Ok(None),
    }
}

/// The process's write model.
pub(super) fn commands<'a>(ctx: &Context<'a>) -> Result<&'a Commands, ApiError> {
    ctx.data_opt::<Commands>()
        .ok_or_else(|| ApiError::internal("the schema was built without the write model"))
}

// ------------------------------------------------------------------ running commands

/// The command's context: the caller is the actor (so an idempotency key is theirs
/// alone); the trace id of a received `traceparent` correlates its events, else the
/// request id (a trace id crosses services; both are 16 bytes).
pub(super) fn command_context(
    ctx: &Context<'_>,
    api: &ApiContext,
    who: &Principal,
    key: Option<String>,
    mutation: &str,
    input: serde_json::Value,
) -> Result<CommandContext, ApiError> {
    let key = valid_idempotency_key(key)?;
    let received = ctx.data_opt::<ReceivedTrace>();
    Ok(CommandContext {
        actor: who.id.clone(),
        correlation_id: Some(match (received, ctx.data_opt::<RequestId>()) {
            (Some(trace), _) => trace.correlation_id(),
            (None, Some(id)) => id.0,
            (None, None) => Uuid::now_v7(),
        }),
        causation_id: None,
        fingerprint: if key.is_some() { fingerprint(mutation, &input) } else { String::new() },
        idempotency_key: key,
        budget: Some(api.command_budget),
        trace: received.map(|r| r.carried.clone()),
    })
}

fn expected_version(v: Option<i32>) -> Result<Option<u64>, ApiError> {
    v.map(|v| non_negative("expectedVersion", v)).transpose()
}

pub(super) fn span(mutation: &'static str, cmd: &CommandContext, stream_id: &str) -> tracing::Span {
    tracing::info_span!("command", mutation, actor = %cmd.actor, correlation_id = ?cmd.correlation_id, stream_id)
}

/// A cart command; only the cart's owner (the caller) may change it: anyone else's
/// cart is NOT_FOUND, checked on the state the command loads.
async fn cart_command(
    writes: &Commands,
    cmd: &CommandContext,
    mutation: &'static str,
    cart_id: CartId,
    expected: Option<u64>,
    command: CartCommand,
) -> Result<CartPayload, ApiError> {
    let done = writes
        .cart(cmd, cart_id, expected, command)
        .instrument(span(mutation, cmd, &cart_id.stream_id()))
        .await?;
    cart_payload(done)
}

async fn order_command(
    writes: &Commands,
    cmd: &CommandContext,
    mutation: &'static str,
    order_id: OrderId,
    command: OrderCommand,
) -> Result<OrderPayload, ApiError> {
    let stream_id = order_id.stream_id();
    let done = writes
        .execute::<OrderAggregate, _, _>(cmd, &stream_id, None, move |state| domain::order::decide(state, command.clone()))
        .instrument(span(mutation, cmd, &stream_id))
        .await?;
    order_payload(done)
}

async fn product_command(
    writes: &Commands,
    cmd: &CommandContext,
    mutation: &'static str,
    sku: &Sku,
    command: ProductCommand,
) -> Result<ProductPayload, ApiError> {
    let stream_id = sku.stream_id();
    let done = writes
        .execute::<ProductAggregate, _, _>(cmd, &stream_id, None, move |state| domain::product::decide(state, command.clone()))
        .instrument(span(mutation, cmd, &stream_id))
        .await?;
    product_payload(done)
}

// ------------------------------------------------------------------ resolvers

#[Object]
impl Mutation {
    async fn create_cart(&self, ctx: &Context<'_>, input: Option<CreateCartInput>) -> Result<CartPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let input = input.unwrap_or(CreateCartInput {
            cart_id: None,
            idempotency_key: None,
        });
        let client_id = input.cart_id.map(|id| id.0);
        let cmd = command_context(ctx, api, who, input.idempotency_key, "createCart", json!({ "cartId": client_id }))?;
        let customer_id = domain::CustomerId::parse(&who.id)?;
        let cart_id = match (client_id, &cmd.idempotency_key) {
            (Some(id), _) => CartId::from_uuid(id),
            // A retry without a client id must answer with the cart the first call made.
            (None, Some(key)) => match api.store.idempotent_outcome(&cmd.actor, key).await? {
                Some((_, outcome)) => outcome
                    .streams
                    .iter()
                    .find_map(|s| match domain::StreamId::parse(&s.stream_id) {
                        Some(domain::StreamId::Cart(id)) => Some(id),
                        _ => None,
                    })
                    .unwrap_or_else(|| CartId::from_uuid(Uuid::now_v7())),
                None => CartId::from_uuid(Uuid::now_v7()),
            },
            (None, None) => CartId::from_uuid(Uuid::now_v7()),
        };
        cart_command(
            commands(ctx)?,
            &cmd,
            "createCart",
            cart_id,
            None,
            CartCommand::Create { cart_id, customer_id },
        )
        .await
    }

    async fn add_item_to_cart(&self, ctx: &Context<'_>, input: AddItemToCartInput) -> Result<CartPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let cart_id = CartId::from_uuid(input.cart_id.0);
        let sku = Sku::parse(&input.sku)?;
        let expected = expected_version(input.expected_version)?;
        let fields =
            json!({ "cartId": cart_id.to_string(), "sku": sku.as_str(), "quantity": input.quantity, "expectedVersion": input.expected_version });
        let cmd = command_context(ctx, api, who, input.idempotency_key, "addItemToCart", fields)?;
        // The price comes from the catalog now, never from the client.
        let done = commands(ctx)?
            .add_item(&cmd, cart_id, sku, i64::from(input.quantity), expected)
            .instrument(span("addItemToCart", &cmd, &cart_id.stream_id()))
            .await?;
        cart_payload(done)
    }

    async fn change_item_quantity(&self, ctx: &Context<'_>, input: ChangeItemQuantityInput) -> Result<CartPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let cart_id = CartId::from_uuid(input.cart_id.0);
        let sku = Sku::parse(&input.sku)?;
        let expected = expected_version(input.expected_version)?;
        let fields =
            json!({ "cartId": cart_id.to_string(), "sku": sku.as_str(), "quantity": input.quantity, "expectedVersion": input.expected_version });
        let cmd = command_context(ctx, api, who, input.idempotency_key, "changeItemQuantity", fields)?;
        let command = CartCommand::ChangeQuantity {
            sku,
            quantity: i64::from(input.quantity),
        };
        cart_command(commands(ctx)?, &cmd, "changeItemQuantity", cart_id, expected, command).await
    }

    async fn remove_item_from_cart(&self, ctx: &Context<'_>, input: RemoveItemFromCartInput) -> Result<CartPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let cart_id = CartId::from_uuid(input.cart_id.0);
        let sku = Sku::parse(&input.sku)?;
        let expected = expected_version(input.expected_version)?;
        let fields = json!({ "cartId": cart_id.to_string(), "sku": sku.as_str(), "expectedVersion": input.expected_version });
        let cmd = command_context(ctx, api, who, input.idempotency_key, "removeItemFromCart", fields)?;
        cart_command(commands(ctx)?, &cmd, "removeItemFromCart", cart_id, expected, CartCommand::Remove { sku }).await
    }

    async fn clear_cart(&self, ctx: &Context<'_>, input: ClearCartInput) -> Result<CartPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let cart_id = CartId::from_uuid(input.cart_id.0);
        let expected = expected_version(input.expected_version)?;
        let fields = json!({ "cartId": cart_id.to_string(), "expectedVersion": input.expected_version });
        let cmd = command_context(ctx, api, who, input.idempotency_key, "clearCart", fields)?;
        cart_command(commands(ctx)?, &cmd, "clearCart", cart_id, expected, CartCommand::Clear).await
    }

    /// Checks the cart out: verifies every line is in stock, reserves it, and places the order, all or nothing.
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> Result<OrderPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let cart_id = CartId::from_uuid(input.cart_id.0);
        let expected = expected_version(input.expected_version)?;
        let personal = PersonalData::new(input.shipping_address.map(Into::into), input.contact_email)?;
        let personal = (!personal.is_empty()).then_some(personal);
        let mut fields = json!({ "cartId": cart_id.to_string(), "expectedVersion": input.expected_version });
        if personal.is_some() {
            // Whether, not what: an idempotency fingerprint must not be a hash of an address.
            fields["withPersonalData"] = true.into();
        }
        let cmd = command_context(ctx, api, who, input.idempotency_key, "placeOrder", fields)?;
        let order_id = OrderId::from_uuid(Uuid::now_v7());
        let placed = commands(ctx)?
            .place_order(&cmd, cart_id, expected, order_id, personal.as_ref().map(|p| (&api.vault, p)))
            .instrument(span("placeOrder", &cmd, &cart_id.stream_id()))
            .await?;
        order_payload(placed.order)
    }

    /// Owner or admin; only while PLACED or PREPARING.
    async fn cancel_order(&self, ctx: &Context<'_>, input: CancelOrderInput) -> Result<OrderPayload, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?;
        let order_id = OrderId::from_uuid(input.order_id.0);
        match order_owner(api, order_id).await? {
            Some(owner) if super::may_see(who, &owner) => {}
            _ => return Err(ApiError::NotFound("order".to_owned())),
        }
        let fields = json!({ "orderId": order_id.to_string(), "reason": input.reason });
        let cmd = command_context(ctx, api, who, input.idempotency_key, "cancelOrder", fields)?;
        order_command(
            commands(ctx)?,
            &cmd,
            "cancelOrder",
            order_id,
            OrderCommand::Cancel { reason: input.reason },
        )
        .await
    }

    /// Admin only; only while PREPARING.
    async fn ship_order(&self, ctx: &Context<'_>, input: ShipOrderInput) -> Result<OrderPayload, ApiError> {
        let who = admin(ctx)?;
        let api = api(ctx)?;
        let order_id = OrderId::from_uuid(input.order_id.0);
        let fields = json!({ "orderId": order_id.to_string() });
        let cmd = command_context(ctx, api, who, input.idempotency_key, "shipOrder", fields)?;
        order_command(commands(ctx)?, &cmd, "shipOrder", order_id, OrderCommand::Ship).await
    }

    /// Erases the signed-in customer's personal data (GDPR art. 17): the key that sealed the
    /// addresses and emails of their orders is deleted, with a PersonalDataErased event.
    /// Repeating it answers the earlier erasure unless personal data was given since.
    async fn erase_my_personal_data(&self, ctx: &Context<'_>) -> Result<ErasurePayload, ApiError> {
        let who = principal(ctx)?;
        super::erasure::erase(ctx, who, &who.id).await
    }

    /// Admin only: erasePersonalData for any customer.
    async fn erase_personal_data(&self, ctx: &Context<'_>, customer_id: String) -> Result<ErasurePayload, ApiError> {
        let who = admin(ctx)?;
        super::erasure::erase(ctx, who, &customer_id).await
    }

    /// Admin only.
    async fn register_product(&self, ctx: &Context<'_>, input: RegisterProductInput) -> Result<ProductPayload, ApiError> {
        let who = admin(ctx)?;
        let api = api(ctx)?;
        let sku = Sku::parse(&input.sku)?;
        let price = price(&input.price)?;
        let cmd = command_context(ctx, api, who, None, "registerProduct", serde_json::Value::Null)?;
        let command = ProductCommand::Register {
            sku: sku.clone(),
            name: input.name,
            price,
            initial_stock: i64::from(input.initial_stock.unwrap_or(0)),
        };
        product_command(commands(ctx)?, &cmd, "registerProduct", &sku, command).await
    }

    /// Admin only. Carts keep the price a line was added at.
    async fn change_product_price(&self, ctx: &Context<'_>, input: ChangeProductPriceInput) -> Result<ProductPayload, ApiError> {
        let who = admin(ctx)?;
        let api = api(ctx)?;
        let sku = Sku::parse(&input.sku)?;
        let price = price(&input.price)?;
        let cmd = command_context(ctx, api, who, None, "changeProductPrice", serde_json::Value::Null)?;
        product_command(commands(ctx)?, &cmd, "changeProductPrice", &sku, ProductCommand::ChangePrice { price }).await
    }

    /// Admin only.
    async fn receive_stock(&self, ctx: &Context<'_>, input: ReceiveStockInput) -> Result<ProductPayload, ApiError> {
        let who = admin(ctx)?;
        let api = api(ctx)?;
        let sku = Sku::parse(&input.sku)?;
        let cmd = command_context(ctx, api, who, None, "receiveStock", serde_json::Value::Null)?;
        product_command(
            commands(ctx)?,
            &cmd,
            "receiveStock",
            &sku,
            ProductCommand::ReceiveStock {
                quantity: i64::from(input.quantity),
            },
        )
        .await
    }

    /// Admin only. Rebuilds a read model from the first event while the old one keeps serving.
    async fn rebuild_projection(&self, ctx: &Context<'_>, name: String) -> Result<ProjectionStatus, ApiError> {
        admin(ctx)?;
        Ok(ProjectionStatus(api(ctx)?.projections.rebuild(&name).await?))
    }

    /// Admin only. Archives one cart stream ("cart-<uuid>") now (#15): its events leave the
    /// hot store, it can never be changed again, and reading it answers ARCHIVED.
    async fn archive_stream(&self, ctx: &Context<'_>, stream_id: String) -> Result<super::archive::ArchivePayload, ApiError> {
        super::archive::archive_stream(ctx, stream_id).await
    }

    /// Admin only. Moves a product stream's events behind its newest snapshot to the archive
    /// (#15): loading starts at the snapshot; history and the feed still show every event.
    async fn truncate_stream(&self, ctx: &Context<'_>, stream_id: String) -> Result<super::archive::TruncatePayload, ApiError> {
        super::archive::truncate_stream(ctx, stream_id).await
    }
}

//! Placing an order: one atomic append across the cart, every product of its lines and
//! the new order, with one expected version per stream.
//!
//! It keeps its own optimistic loop rather than a mailbox (it spans several streams):
//! it reads the tails of the cart and of each product after their cached states, decides,
//! and appends with `Exact` versions. A conflict (a cart command of this or another
//! process, a concurrent stock change) is re-read and re-decided with jittered backoff
//! until the deadline; only a client's `expected_cart_version` turns a cart conflict
//! into [`CommandError::Conflict`].

use std::collections::BTreeMap;

use domain::{CartId, CartState, OrderId, OrderState, PersonalData, Product, SealedPersonalData, Sku};
use store::{AppendRequest, ExpectedVersion, StoreError};
use tokio::time::Instant;
use vault::Vault;

use crate::aggregate::{encode, Aggregate, CartAggregate, Loaded, OrderAggregate, ProductAggregate};
use crate::cart::owned;
use crate::idempotency::{replayed, stored_outcome};
use crate::retry::Backoff;
use crate::{CommandContext, CommandError, Commands, Executed};

/// Everything a placed order left behind: the order and the checked-out cart.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacedOrder {
    pub order: Executed<OrderState>,
    pub cart: CartState,
}

impl Commands {
    /// Places the order for a cart owned by `ctx.actor`, with `personal_data` sealed by the
    /// vault under the key of the cart's customer (once, before the first attempt).
    pub async fn place_order(
        &self,
        ctx: &CommandContext,
        cart_id: CartId,
        expected_cart_version: Option<u64>,
        order_id: OrderId,
        personal_data: Option<(&Vault, &PersonalData)>,
    ) -> Result<PlacedOrder, CommandError> {
        let store = self.store().clone();
        let cart_stream = cart_id.stream_id();
        if let Some(outcome) = stored_outcome(store.as_ref(), ctx).await? {
            let order_stream = outcome
                .streams
                .iter()
                .find(|s| s.stream_id.starts_with("order-"))
                .map(|s| s.stream_id.clone())
                .ok_or(CommandError::IdempotencyKeyReused)?;
            let order = replayed::<OrderAggregate>(store.as_ref(), &order_stream, &outcome).await?;
            let cart = replayed::<CartAggregate>(store.as_ref(), &cart_stream, &outcome).await?.state;
            return Ok(PlacedOrder { order, cart });
        }
        let deadline = ctx.deadline();
        let ctx = &ctx.traced();
        let mut backoff = Backoff::new();
        let mut sealed: Option<SealedPersonalData> = None;
        loop {
            let cart = self.current::<CartAggregate>(&cart_stream).await?;
            owned(&cart.state, &ctx.actor)?;
            if let Some(expected) = expected_cart_version {
                if expected != cart.version {
                    return Err(CommandError::Conflict {
                        expected,
                        actual: cart.version,
                    });
                }
            }
            let mut products = BTreeMap::<Sku, Product>::new();
            let mut loaded_products = BTreeMap::<Sku, Loaded<domain::ProductState>>::new();
            for line in cart.state.iter().flat_map(|c| c.lines.iter()) {
                let loaded = self.current::<ProductAggregate>(&line.sku.stream_id()).await?;
                if let Some(product) = &loaded.state {
                    products.insert(line.sku.clone(), product.clone());
                    loaded_products.insert(line.sku.clone(), loaded);
                }
            }
            if let (Some((vault, data)), Some(owner), None) = (personal_data, cart.state.as_ref(), &sealed) {
                // Decided once without it first: an order refused anyway makes no data key.
                domain::decide_place_order(&cart.state, &products, order_id, None)?;
                sealed = Some(vault.seal(&owner.customer_id, data).await?);
            }
            let decided = domain::decide_place_order(&cart.state, &products, order_id, sealed.clone())?;
            let metadata = ctx.metadata();
            let mut request = AppendRequest::single(
                &cart_stream,
                ExpectedVersion::Exact(cart.version),
                decided.cart_events.iter().map(|e| encode(e, &metadata)).collect(),
            );
            for (sku, events) in &decided.product_events {
                let version = loaded_products.get(sku).map_or(0, |l| l.version);
                request = request.with_stream(
                    sku.stream_id(),
                    ExpectedVersion::Exact(version),
                    events.iter().map(|e| encode(e, &metadata)).collect(),
                );
            }
            request = request.with_stream(
                order_id.stream_id(),
                ExpectedVersion::NoStream,
                decided.order_events.iter().map(|e| encode(e, &metadata)).collect(),
            );
            request.idempotency = ctx.idempotency();
            match store.append(request).await {
                Ok(outcome) if outcome.replayed => {
                    let order = replayed::<OrderAggregate>(store.as_ref(), &order_id.stream_id(), &outcome).await?;
                    let cart = replayed::<CartAggregate>(store.as_ref(), &cart_stream, &outcome).await?.state;
                    return Ok(PlacedOrder { order, cart });
                }
                Ok(outcome) => {
                    // The cart's events come first in the request; a product's position is
                    // looked up should a no-op ever need it.
                    let cart_position = decided.cart_events.len().checked_sub(1).and_then(|i| outcome.positions.get(i)).copied();
                    let cart_state = decided.cart_events.iter().fold(cart.state, CartAggregate::evolve);
                    self.remember::<CartAggregate>(
                        &cart_stream,
                        &Loaded {
                            state: cart_state.clone(),
                            version: cart.version + decided.cart_events.len() as u64,
                            snapshot_version: cart.snapshot_version,
                            position: cart_position,
                        },
                    );
                    for (sku, events) in &decided.product_events {
                        if let Some(loaded) = loaded_products.remove(sku) {
                            let after = Loaded {
                                version: loaded.version + events.len() as u64,
                                state: events.iter().fold(loaded.state, ProductAggregate::evolve),
                                snapshot_version: loaded.snapshot_version,
                                position: None,
                            };
                            self.remember::<ProductAggregate>(&sku.stream_id(), &after);
                        }
                    }
                    let order_state = decided.order_events.iter().fold(OrderState::default(), OrderAggregate::evolve);
                    let order = Executed {
                        state: order_state,
                        version: decided.order_events.len() as u64,
                        position: outcome.last_position(),
                        replayed: false,
                    };
                    return Ok(PlacedOrder { order, cart: cart_state });
                }
                Err(StoreError::Conflict { stream, actual, .. }) => match expected_cart_version {
                    Some(expected) if stream == cart_stream => return Err(CommandError::Conflict { expected, actual }),
                    _ if Instant::now() >= deadline => return Err(CommandError::Timeout),
                    _ => backoff.wait(deadline).await,
                },
                Err(e) => return Err(e.into()),
            }
        }
    }
}

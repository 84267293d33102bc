//! Placing an order: the one decision that spans aggregates.
//!
//! Checking a cart out must, all or nothing, check the cart out, reserve the
//! stock of every line and place the order. The caller loads the cart and the
//! products of its lines, calls [`decide_place_order`], and appends the result
//! to every stream in one atomic call, each stream with the version it was
//! loaded at (the order stream: no stream yet). A concurrent change to any of
//! them makes the append conflict, and the caller decides again on fresh state,
//! so stock can never be reserved twice.
//!
//! The reverse direction, [`decide_inventory_commands`], is what the inventory
//! reactor does once an order ends: release its stock if it was cancelled,
//! take it out of stock if it shipped.

use std::collections::BTreeMap;

use crate::cart::{CartEvent, CartState};
use crate::error::DomainError;
use crate::ids::{OrderId, Sku};
use crate::line::Line;
use crate::money::Money;
use crate::order::{Order, OrderEvent, OrderStatus};
use crate::personal::SealedPersonalData;
use crate::product::{self, Product, ProductCommand, ProductEvent};

/// Everything placing an order appends, per stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaceOrderEvents {
    /// Appended to the cart's stream: `CartCheckedOut`.
    pub cart_events: Vec<CartEvent>,
    /// Appended to each product's stream (`product-<sku>`), in the cart's line
    /// order: one `StockReserved` each.
    pub product_events: Vec<(Sku, Vec<ProductEvent>)>,
    /// Appended to the new order's stream: `OrderPlaced`.
    pub order_events: Vec<OrderEvent>,
}

/// Decides the checkout of `cart` as order `order_id`.
///
/// `products` holds the registered products of the cart's lines (it may hold
/// more). Rejections, in this order: `NOT_FOUND` (no cart), `CART_NOT_OPEN`,
/// `EMPTY_CART`, then per line in the cart's order the first of `NOT_FOUND`
/// (a product missing from `products`) or `OUT_OF_STOCK` (with that line's
/// sku, requested and available units).
///
/// Order lines take the cart lines' names and unit prices: the customer pays
/// the price shown when the item went into the cart, not today's. The order
/// carries `personal_data` as sealed by the caller.
pub fn decide_place_order(
    cart: &CartState,
    products: &BTreeMap<Sku, Product>,
    order_id: OrderId,
    personal_data: Option<SealedPersonalData>,
) -> Result<PlaceOrderEvents, DomainError> {
    let cart = cart.as_ref().ok_or_else(|| DomainError::NotFound("cart".to_owned()))?;
    if !cart.is_open() {
        return Err(DomainError::CartNotOpen);
    }
    if cart.lines.is_empty() {
        return Err(DomainError::EmptyCart);
    }

    let mut product_events = Vec::with_capacity(cart.lines.len());
    for line in &cart.lines {
        let product = products
            .get(&line.sku)
            .ok_or_else(|| DomainError::NotFound(format!("product {}", line.sku)))?;
        let reserved = product::reserve(product, order_id, line.quantity)?;
        product_events.push((line.sku.clone(), vec![reserved]));
    }

    let lines: Vec<Line> = cart.lines.to_vec();
    // Cannot overflow given the cart's limits; checked rather than trusted.
    let total =
        Money::checked_sum(lines.iter().map(Line::line_total)).ok_or_else(|| DomainError::BadUserInput("the order total is too large".to_owned()))?;

    Ok(PlaceOrderEvents {
        cart_events: vec![CartEvent::CartCheckedOut { order_id }],
        product_events,
        order_events: vec![OrderEvent::OrderPlaced {
            order_id,
            cart_id: cart.id,
            customer_id: cart.customer_id.clone(),
            lines,
            total,
            personal_data,
        }],
    })
}

/// The product commands that settle an order's stock once it has ended: one
/// `Release` per line when it is cancelled, one `Ship` per line when it has
/// shipped, none otherwise.
///
/// Decided from the order's state rather than the triggering event: both end
/// states are final, so a reactor that replays `OrderCancelled` or
/// `OrderShipped` later still decides the same, and `Release`/`Ship` append
/// nothing when the order holds no units any more.
pub fn decide_inventory_commands(order: &Order) -> Vec<(Sku, ProductCommand)> {
    let command = |order_id| match order.status {
        OrderStatus::Cancelled => Some(ProductCommand::Release { order_id }),
        OrderStatus::Shipped => Some(ProductCommand::Ship { order_id }),
        OrderStatus::Placed | OrderStatus::Preparing => None,
    };
    order
        .lines
        .iter()
        .filter_map(|line| command(order.id).map(|c| (line.sku.clone(), c)))
        .collect()
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

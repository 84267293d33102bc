//! The product aggregate: catalog entry and inventory of one sku.
//!
//! Stock is tracked as units on hand plus the units each order has reserved,
//! so that releasing (on cancel) or shipping acts on exactly what that order
//! reserved, and doing it twice is a harmless no-op. Invariant: the reserved
//! units never exceed the units on hand, so `available` is never negative.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::event::{Event, EventType};
use crate::ids::{OrderId, Sku, PRODUCT_CATEGORY};
use crate::money::Money;

/// Bump when the shape of [`Product`] changes, so that old snapshots are
/// ignored and the product is folded from its events instead.
pub const STATE_SCHEMA_VERSION: i32 = 1;

/// The longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The most units on hand. Keeps every stock figure within the contract's
/// 32-bit `Int`.
pub const MAX_ON_HAND: u32 = 1_000_000_000;

/// A product that exists (its stream has `ProductRegistered`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    /// Units in the warehouse, reserved or not.
    pub on_hand: u32,
    /// Units held for each placed order that has not shipped or been
    /// cancelled. No entry has 0 units.
    pub reserved: BTreeMap<OrderId, u32>,
}

impl Product {
    /// Units held for all orders.
    pub fn reserved_total(&self) -> u32 {
        self.reserved.values().fold(0u32, |sum, q| sum.saturating_add(*q))
    }

    /// Units that can still be reserved: on hand minus reserved.
    pub fn available(&self) -> u32 {
        self.on_hand.saturating_sub(self.reserved_total())
    }

    /// Units held for one order (0 when none).
    pub fn reserved_for(&self, order_id: &OrderId) -> u32 {
        self.reserved.get(order_id).copied().unwrap_or(0)
    }
}

/// The state of a product stream: `None` (the default) while the stream has
/// no events.
pub type ProductState = Option<Product>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProductCommand {
    /// Registers the product with an optional first delivery (`initial_stock`
    /// 0 appends only `ProductRegistered`). Quantities are the raw input
    /// (GraphQL `Int`), validated here.
    Register {
        sku: Sku,
        name: String,
        price: Money,
        initial_stock: i64,
    },
    /// Setting the current price again is accepted and appends nothing.
    ChangePrice {
        price: Money,
    },
    ReceiveStock {
        quantity: i64,
    },
    /// Holds units for an order; decided by [`crate::place_order`].
    Reserve {
        order_id: OrderId,
        quantity: u32,
    },
    /// Gives back whatever the order holds; nothing held appends nothing.
    Release {
        order_id: OrderId,
    },
    /// Takes whatever the order holds out of stock for good; nothing held
    /// appends nothing.
    Ship {
        order_id: OrderId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProductEvent {
    #[serde(rename = "ProductRegistered")]
    ProductRegistered { sku: Sku, name: String, price: Money },
    #[serde(rename = "ProductPriceChanged")]
    ProductPriceChanged { price: Money },
    #[serde(rename = "StockReceived")]
    StockReceived { quantity: u32 },
    #[serde(rename = "StockReserved")]
    StockReserved { order_id: OrderId, quantity: u32 },
    #[serde(rename = "StockReleased")]
    StockReleased { order_id: OrderId, quantity: u32 },
    #[serde(rename = "StockShipped")]
    StockShipped { order_id: OrderId, quantity: u32 },
}

impl ProductEvent {
    pub const PRODUCT_REGISTERED: EventType = EventType {
        name: "ProductRegistered",
        schema_version: 1,
    };
    pub const PRODUCT_PRICE_CHANGED: EventType = EventType {
        name: "ProductPriceChanged",
        schema_version: 1,
    };
    pub const STOCK_RECEIVED: EventType = EventType {
        name: "StockReceived",
        schema_version: 1,
    };
    pub const STOCK_RESERVED: EventType = EventType {
        name: "StockReserved",
        schema_version: 1,
    };
    pub const STOCK_RELEASED: EventType = EventType {
        name: "StockReleased",
        schema_version: 1,
    };
    pub const STOCK_SHIPPED: EventType = EventType {
        name: "StockShipped",
        schema_version: 1,
    };
}

impl Event for ProductEvent {
    const CATEGORY: &'static str = PRODUCT_CATEGORY;
    const TYPES: &'static [EventType] = &[
        Self::PRODUCT_REGISTERED,
        Self::PRODUCT_PRICE_CHANGED,
        Self::STOCK_RECEIVED,
        Self::STOCK_RESERVED,
        Self::STOCK_RELEASED,
        Self::STOCK_SHIPPED,
    ];

    fn kind(&self) -> EventType {
        match self {
            Self::ProductRegistered { .. } => Self::PRODUCT_REGISTERED,
            Self::ProductPriceChanged { .. } => Self::PRODUCT_PRICE_CHANGED,
            Self::StockReceived { .. } => Self::STOCK_RECEIVED,
            Self::StockReserved { .. } => Self::STOCK_RESERVED,
            Self::StockReleased { .. } => Self::STOCK_RELEASED,
            Self::StockShipped { .. } => Self::STOCK_SHIPPED,
        }
    }
}

/// Trims the name and checks it is 1 to [`MAX_NAME_CHARS`] characters.
fn valid_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(DomainError::BadUserInput(format!(
            "product name must be 1 to {MAX_NAME_CHARS} characters (got {chars})"
        )));
    }
    Ok(name.to_owned())
}

/// Checks that `quantity` more units fit on hand; `min` is the smallest
/// accepted quantity (0 for an initial stock, 1 for a delivery).
fn valid_receipt(on_hand: u32, quantity: i64, min: i64) -> Result<u32, DomainError> {
    if quantity < min {
        return Err(DomainError::BadUserInput(format!(
            "stock quantity must be at least {min} (got {quantity})"
        )));
    }
    u32::try_from(quantity)
        .ok()
        .filter(|q| on_hand.checked_add(*q).is_some_and(|t| t <= MAX_ON_HAND))
        .ok_or_else(|| {
            DomainError::BadUserInput(format!(
                "at most {MAX_ON_HAND} units can be on hand: {on_hand} plus {quantity} is too many"
            ))
        })
}

/// Decides what a command appends to the product. Every command but
/// `Register` needs a registered product (`NOT_FOUND`).
pub fn decide(state: &ProductState, command: ProductCommand) -> Result<Vec<ProductEvent>, DomainError> {
    let existing = || state.as_ref().ok_or_else(|| DomainError::NotFound("product".to_owned()));
    match command {
        ProductCommand::Register {
            sku,
            name,
            price,
            initial_stock,
        } => {
            if state.is_some() {
                return Err(DomainError::BadUserInput(format!("product {sku} is already registered")));
            }
            let name = valid_name(&name)?;
            let price = price.validate_price()?;
            let initial_stock = valid_receipt(0, initial_stock, 0)?;
            let mut events = vec![ProductEvent::ProductRegistered { sku, name, price }];
            if initial_stock > 0 {
                events.push(ProductEvent::StockReceived { quantity: initial_stock });
            }
            Ok(events)
        }
        ProductCommand::ChangePrice { price } => {
            let product = existing()?;
            let price = price.validate_price()?;
            if product.price == price {
                return Ok(vec![]);
            }
            Ok(vec![ProductEvent::ProductPriceChanged { price }])
        }
        ProductCommand::ReceiveStock { quantity } => {
            let product = existing()?;
            let quantity = valid_receipt(product.on_hand, quantity, 1)?;
            Ok(vec![ProductEvent::StockReceived { quantity }])
        }
        ProductCommand::Reserve { order_id, quantity } => reserve(existing()?, order_id, quantity).map(|event| vec![event]),
        ProductCommand::Release { order_id } => {
            let quantity = existing()?.reserved_for(&order_id);
            if quantity == 0 {
                return Ok(vec![]);
            }
            Ok(vec![ProductEvent::StockReleased { order_id, quantity }])
        }
        ProductCommand::Ship { order_id } => {
            let quantity = existing()?.reserved_for(&order_id);
            if quantity == 0 {
                return Ok(vec![]);
            }
            Ok(vec![ProductEvent::StockShipped { order_id, quantity }])
        }
    }
}

/// Holds `quantity` units for an order, or `OUT_OF_STOCK` when fewer are
/// available. Shared by `Reserve` and [`crate::place_order`] so both apply the
/// same rule.
pub(crate) fn reserve(product: &Product, order_id: OrderId, quantity: u32) -> Result<ProductEvent, DomainError> {
    if quantity == 0 {
        return Err(DomainError::BadUserInput("a reservation must be for at least 1 unit".to_owned()));
    }
    let available = product.available();
    if quantity > available {
        return Err(DomainError::OutOfStock {
            sku: product.sku.clone(),
            requested: quantity,
            available,
        });
    }
    Ok(ProductEvent::StockReserved { order_id, quantity })
}

/// Applies an event. Trusts it (decide already checked it): events that make
/// no sense in the state leave it as is and arithmetic saturates, so that
/// evolve never panics on a stored stream.
pub fn evolve(state: ProductState, event: &ProductEvent) -> ProductState {
    if let ProductEvent::ProductRegistered { sku, name, price } = event {
        return Some(Product {
            sku: sku.clone(),
            name: name.clone(),
            price: *price,
            on_hand: 0,
            reserved: BTreeMap::new(),
        });
    }
    let mut product = state?;
    match event {
        ProductEvent::ProductRegistered { .. } => {}
        ProductEvent::ProductPriceChanged { price } => product.price = *price,
        ProductEvent::StockReceived { quantity } => {
            product.on_hand = product.on_hand.saturating_add(*quantity);
        }
        ProductEvent::StockReserved { order_id, quantity } => {
            let held = product.reserved.entry(*order_id).or_insert(0);
            *held = held.saturating_add(*quantity);
        }
        ProductEvent::StockReleased { order_id, quantity } => {
            take_reservation(&mut product, order_id, *quantity);
        }
        ProductEvent::StockShipped { order_id, quantity } => {
            let taken = take_reservation(&mut product, order_id, *quantity);
            product.on_hand = product.on_hand.saturating_sub(taken);
        }
    }
    Some(product)
}

/// Removes up to `quantity` units from an order's reservation, dropping the
/// entry when it reaches 0; returns the units removed.
fn take_reservation(product: &mut Product, order_id: &OrderId, quantity: u32) -> u32 {
    let Some(held) = product.reserved.get_mut(order_id) else {
        return 0;
    };
    let taken = quantity.min(*held);
    *held -= taken;
    if *held == 0 {
        product.reserved.remove(order_id);
    }
    taken
}

/// The state after these events, from an empty stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a ProductEvent>) -> ProductState {
    events.into_iter().fold(None, evolve)
}

#[cfg(test)]
mod tests;

//! The cart aggregate: a customer's lines of skus until checkout.
//!
//! Invariants, held by [`decide`] and relied on everywhere else: every line
//! has a quantity of 1 to [`MAX_LINE_QUANTITY`], a sku appears in at most one
//! line, there are at most [`MAX_LINES`] lines, and only an open cart changes.
//! Checkout is not a cart command: it is decided together with stock and the
//! order in [`crate::place_order`].

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::event::{Event, EventType};
use crate::ids::{CartId, CustomerId, OrderId, Sku, CART_CATEGORY};
use crate::line::Line;
use crate::money::Money;

/// Bump when the shape of [`Cart`] changes, so that old snapshots are ignored
/// and the cart is folded from its events instead.
pub const STATE_SCHEMA_VERSION: i32 = 1;

/// The most units of one sku a cart holds, and the most one command adds.
pub const MAX_LINE_QUANTITY: u32 = 999;

/// The most distinct skus a cart holds.
pub const MAX_LINES: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CartStatus {
    Open,
    CheckedOut,
}

/// A cart that exists (its stream has at least `CartCreated`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub id: CartId,
    pub customer_id: CustomerId,
    pub status: CartStatus,
    /// In the order the skus were first added.
    pub lines: Vec<Line>,
    /// Set by checkout.
    pub order_id: Option<OrderId>,
}

impl Cart {
    pub fn line(&self, sku: &Sku) -> Option<&Line> {
        self.lines.iter().find(|line| &line.sku == sku)
    }

    /// Sum of the quantities of all lines (at most 99,900).
    pub fn item_count(&self) -> u32 {
        self.lines.iter().map(|line| line.quantity).sum()
    }

    /// Sum of the line totals; cannot overflow (see [`Line::line_total`]).
    pub fn subtotal(&self) -> Money {
        Money::checked_sum(self.lines.iter().map(Line::line_total)).unwrap_or(Money::from_minor(i64::MAX))
    }

    pub fn is_open(&self) -> bool {
        self.status == CartStatus::Open
    }
}

/// The state of a cart stream: `None` (the default) while the stream has no
/// events.
pub type CartState = Option<Cart>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CartCommand {
    Create {
        cart_id: CartId,
        customer_id: CustomerId,
    },
    /// The caller looks the product up in the catalog and passes its current
    /// name and price: a price never comes from the client. `quantity` is
    /// the raw input (GraphQL `Int`), validated here.
    AddItem {
        sku: Sku,
        quantity: i64,
        name: String,
        unit_price: Money,
    },
    /// Sets the line's quantity (not a delta).
    ChangeQuantity {
        sku: Sku,
        quantity: i64,
    },
    Remove {
        sku: Sku,
    },
    /// Empties the cart. Clearing an empty cart is accepted and appends
    /// nothing: the customer's intent ("make it empty") already holds, and a
    /// retried clear must not fail.
    Clear,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CartEvent {
    #[serde(rename = "CartCreated")]
    CartCreated { cart_id: CartId, customer_id: CustomerId },
    /// `quantity` is the amount this command added, not the line's new total.
    /// For a sku already in the cart, `name` and `unit_price` repeat the
    /// line's, since the line keeps the price it was first added at.
    #[serde(rename = "ItemAddedToCart")]
    ItemAddedToCart {
        sku: Sku,
        name: String,
        quantity: u32,
        unit_price: Money,
    },
    /// `quantity` is the line's new quantity.
    #[serde(rename = "ItemQuantityChanged")]
    ItemQuantityChanged { sku: Sku, quantity: u32 },
    #[serde(rename = "ItemRemovedFromCart")]
    ItemRemovedFromCart { sku: Sku },
    #[serde(rename = "CartCleared")]
    CartCleared {},
    #[serde(rename = "CartCheckedOut")]
    CartCheckedOut { order_id: OrderId },
}

impl CartEvent {
    pub const CART_CREATED: EventType = EventType {
        name: "CartCreated",
        schema_version: 1,
    };
    /// Version 1 was the seed's `{"item_id": ..., "quantity": ...}`, without
    /// name or price; the store upcasts it to version 2.
    pub const ITEM_ADDED_TO_CART: EventType = EventType {
        name: "ItemAddedToCart",
        schema_version: 2,
    };
    pub const ITEM_QUANTITY_CHANGED: EventType = EventType {
        name: "ItemQuantityChanged",
        schema_version: 1,
    };
    pub const ITEM_REMOVED_FROM_CART: EventType = EventType {
        name: "ItemRemovedFromCart",
        schema_version: 1,
    };
    pub const CART_CLEARED: EventType = EventType {
        name: "CartCleared",
        schema_version: 1,
    };
    pub const CART_CHECKED_OUT: EventType = EventType {
        name: "CartCheckedOut",
        schema_version: 1,
    };
}

impl Event for CartEvent {
    const CATEGORY: &'static str = CART_CATEGORY;
    const TYPES: &'static [EventType] = &[
        Self::CART_CREATED,
        Self::ITEM_ADDED_TO_CART,
        Self::ITEM_QUANTITY_CHANGED,
        Self::ITEM_REMOVED_FROM_CART,
        Self::CART_CLEARED,
        Self::CART_CHECKED_OUT,
    ];

    fn kind(&self) -> EventType {
        match self {
            Self::CartCreated { .. } => Self::CART_CREATED,
            Self::ItemAddedToCart { .. } => Self::ITEM_ADDED_TO_CART,
            Self::ItemQuantityChanged { .. } => Self::ITEM_QUANTITY_CHANGED,
            Self::ItemRemovedFromCart { .. } => Self::ITEM_REMOVED_FROM_CART,
            Self::CartCleared {} => Self::CART_CLEARED,
            Self::CartCheckedOut { .. } => Self::CART_CHECKED_OUT,
        }
    }
}

/// A quantity from a command: 1 to 999.
fn command_quantity(quantity: i64) -> Result<u32, DomainError> {
    u32::try_from(quantity)
        .ok()
        .filter(|q| (1..=MAX_LINE_QUANTITY).contains(q))
        .ok_or_else(|| DomainError::BadUserInput(format!("quantity must be between 1 and {MAX_LINE_QUANTITY} (got {quantity})")))
}

/// Decides what a command appends to the cart. Checks, in this order: the
/// cart exists (`NOT_FOUND`), it is open (`CART_NOT_OPEN`), the input is valid
/// (`BAD_USER_INPUT`), then the rules of the command.
pub fn decide(state: &CartState, command: CartCommand) -> Result<Vec<CartEvent>, DomainError> {
    match command {
        CartCommand::Create { cart_id, customer_id } => match state {
            None => Ok(vec![CartEvent::CartCreated { cart_id, customer_id }]),
            Some(_) => Err(DomainError::BadUserInput("cart already exists".to_owned())),
        },
        CartCommand::AddItem {
            sku,
            quantity,
            name,
            unit_price,
        } => add_item(open_cart(state)?, sku, quantity, name, unit_price),
        CartCommand::ChangeQuantity { sku, quantity } => {
            let cart = open_cart(state)?;
            let quantity = command_quantity(quantity)?;
            let line = cart.line(&sku).ok_or_else(|| DomainError::ItemNotInCart { sku: sku.clone() })?;
            if line.quantity == quantity {
                // Already so: appending would only add noise to the history.
                return Ok(vec![]);
            }
            Ok(vec![CartEvent::ItemQuantityChanged { sku, quantity }])
        }
        CartCommand::Remove { sku } => {
            if open_cart(state)?.line(&sku).is_none() {
                return Err(DomainError::ItemNotInCart { sku });
            }
            Ok(vec![CartEvent::ItemRemovedFromCart { sku }])
        }
        CartCommand::Clear => {
            if open_cart(state)?.lines.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![CartEvent::CartCleared {}])
        }
    }
}

/// The cart a command other than `Create` acts on: it must exist and be open.
fn open_cart(state: &CartState) -> Result<&Cart, DomainError> {
    let cart = state.as_ref().ok_or_else(|| DomainError::NotFound("cart".to_owned()))?;
    if cart.is_open() {
        Ok(cart)
    } else {
        Err(DomainError::CartNotOpen)
    }
}

fn add_item(cart: &Cart, sku: Sku, quantity: i64, name: String, unit_price: Money) -> Result<Vec<CartEvent>, DomainError> {
    let quantity = command_quantity(quantity)?;
    let unit_price = unit_price.validate_price()?;
    match cart.line(&sku) {
        Some(line) => {
            let total = line.quantity + quantity;
            if total > MAX_LINE_QUANTITY {
                return Err(DomainError::BadUserInput(format!(
                    "a cart holds at most {MAX_LINE_QUANTITY} units of {sku}: it has {}, adding {quantity} would make {total}",
                    line.quantity
                )));
            }
            Ok(vec![CartEvent::ItemAddedToCart {
                sku,
                name: line.name.clone(),
                quantity,
                unit_price: line.unit_price,
            }])
        }
        None => {
            if cart.lines.len() >= MAX_LINES {
                return Err(DomainError::BadUserInput(format!(
                    "a cart holds at most {MAX_LINES} different items; remove one first"
                )));
            }
            Ok(vec![CartEvent::ItemAddedToCart {
                sku,
                name,
                quantity,
                unit_price,
            }])
        }
    }
}

/// Applies an event. Trusts it (decide already checked it): events that make
/// no sense in the state, which decide never emits, leave the state as is,
/// and arithmetic saturates, so that evolve never panics on a stored stream.
pub fn evolve(state: CartState, event: &CartEvent) -> CartState {
    if let CartEvent::CartCreated { cart_id, customer_id } = event {
        return Some(Cart {
            id: *cart_id,
            customer_id: customer_id.clone(),
            status: CartStatus::Open,
            lines: Vec::new(),
            order_id: None,
        });
    }
    let mut cart = state?;
    match event {
        CartEvent::CartCreated { .. } => {}
        CartEvent::ItemAddedToCart {
            sku,
            name,
            quantity,
            unit_price,
        } => match cart.lines.iter_mut().find(|line| &line.sku == sku) {
            Some(line) => line.quantity = line.quantity.saturating_add(*quantity),
            None => cart.lines.push(Line {
                sku: sku.clone(),
                name: name.clone(),
                quantity: *quantity,
                unit_price: *unit_price,
            }),
        },
        CartEvent::ItemQuantityChanged { sku, quantity } => {
            if let Some(line) = cart.lines.iter_mut().find(|line| &line.sku == sku) {
                line.quantity = *quantity;
            }
        }
        CartEvent::ItemRemovedFromCart { sku } => cart.lines.retain(|line| &line.sku != sku),
        CartEvent::CartCleared {} => cart.lines.clear(),
        CartEvent::CartCheckedOut { order_id } => {
            cart.status = CartStatus::CheckedOut;
            cart.order_id = Some(*order_id);
        }
    }
    Some(cart)
}

/// The state after these events, from an empty stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a CartEvent>) -> CartState {
    events.into_iter().fold(None, evolve)
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

//! The order aggregate: what was bought, at which prices, and where it is in
//! its life.
//!
//! ```text
//! PLACED -> PREPARING -> SHIPPED
//!    |          |
//!    +----------+-> CANCELLED
//! ```
//!
//! Any other move is `INVALID_ORDER_STATE`, including repeating one (shipping a
//! shipped order): reactors are protected from repeats by idempotency keys,
//! and a person repeating a move should hear that it already happened.
//! An order is created only by [`crate::place_order`], never by a command here.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::event::{Event, EventType};
use crate::ids::{CartId, CustomerId, OrderId, ORDER_CATEGORY};
use crate::line::Line;
use crate::money::Money;
use crate::personal::SealedPersonalData;

/// Bump when the shape of [`Order`] changes, so that old snapshots are
/// ignored and the order is folded from its events instead.
pub const STATE_SCHEMA_VERSION: i32 = 1;

/// The longest cancellation reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Spelled as the contract's `OrderStatus` (`PLACED`, ...) in snapshots and
/// in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Placed,
    Preparing,
    Shipped,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Preparing => "PREPARING",
            Self::Shipped => "SHIPPED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The move a rejected command attempted, for `INVALID_ORDER_STATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderAction {
    StartPreparation,
    Ship,
    Cancel,
}

impl OrderAction {
    /// As a verb: "cannot {action} an order that is SHIPPED".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartPreparation => "start preparing",
            Self::Ship => "ship",
            Self::Cancel => "cancel",
        }
    }
}

impl fmt::Display for OrderAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order that exists (its stream has `OrderPlaced`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub cart_id: CartId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub lines: Vec<Line>,
    pub total: Money,
    /// Set when cancelled with a reason.
    pub cancel_reason: Option<String>,
    /// The shipping address and contact email, sealed (readable while the customer's
    /// data key exists). Absent in snapshots written before it existed.
    #[serde(default)]
    pub personal_data: Option<SealedPersonalData>,
}

/// The state of an order stream: `None` (the default) while the stream has no
/// events.
pub type OrderState = Option<Order>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderCommand {
    /// Fulfilment picked the order up.
    StartPreparation,
    Ship,
    /// The reason is trimmed; an empty one counts as none.
    Cancel {
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    #[serde(rename = "OrderPlaced")]
    OrderPlaced {
        order_id: OrderId,
        cart_id: CartId,
        customer_id: CustomerId,
        lines: Vec<Line>,
        total: Money,
        /// Added without a schema bump: absent means none, as in orders placed before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        personal_data: Option<SealedPersonalData>,
    },
    #[serde(rename = "OrderPreparationStarted")]
    OrderPreparationStarted {},
    #[serde(rename = "OrderShipped")]
    OrderShipped {},
    #[serde(rename = "OrderCancelled")]
    OrderCancelled { reason: Option<String> },
}

impl OrderEvent {
    pub const ORDER_PLACED: EventType = EventType {
        name: "OrderPlaced",
        schema_version: 1,
    };
    pub const ORDER_PREPARATION_STARTED: EventType = EventType {
        name: "OrderPreparationStarted",
        schema_version: 1,
    };
    pub const ORDER_SHIPPED: EventType = EventType {
        name: "OrderShipped",
        schema_version: 1,
    };
    pub const ORDER_CANCELLED: EventType = EventType {
        name: "OrderCancelled",
        schema_version: 1,
    };
}

impl Event for OrderEvent {
    const CATEGORY: &'static str = ORDER_CATEGORY;
    const TYPES: &'static [EventType] = &[
        Self::ORDER_PLACED,
        Self::ORDER_PREPARATION_STARTED,
        Self::ORDER_SHIPPED,
        Self::ORDER_CANCELLED,
    ];

    fn kind(&self) -> EventType {
        match self {
            Self::OrderPlaced { .. } => Self::ORDER_PLACED,
            Self::OrderPreparationStarted {} => Self::ORDER_PREPARATION_STARTED,
            Self::OrderShipped {} => Self::ORDER_SHIPPED,
            Self::OrderCancelled { .. } => Self::ORDER_CANCELLED,
        }
    }
}

/// Decides what a command appends to the order: `NOT_FOUND` when it does not
/// exist, `INVALID_ORDER_STATE` for a move the state machine does not allow.
pub fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, DomainError> {
    let order = state.as_ref().ok_or_else(|| DomainError::NotFound("order".to_owned()))?;
    let invalid = |action| DomainError::InvalidOrderState { from: order.status, action };
    match command {
        OrderCommand::StartPreparation => match order.status {
            OrderStatus::Placed => Ok(vec![OrderEvent::OrderPreparationStarted {}]),
            _ => Err(invalid(OrderAction::StartPreparation)),
        },
        OrderCommand::Ship => match order.status {
            OrderStatus::Preparing => Ok(vec![OrderEvent::OrderShipped {}]),
            _ => Err(invalid(OrderAction::Ship)),
        },
        OrderCommand::Cancel { reason } => match order.status {
            OrderStatus::Placed | OrderStatus::Preparing => {
                let reason = valid_reason(reason)?;
                Ok(vec![OrderEvent::OrderCancelled { reason }])
            }
            _ => Err(invalid(OrderAction::Cancel)),
        },
    }
}

fn valid_reason(reason: Option<String>) -> Result<Option<String>, DomainError> {
    let Some(reason) = reason else {
        return Ok(None);
    };
    let reason = reason.trim();
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(DomainError::BadUserInput(format!(
            "cancellation reason must be at most {MAX_REASON_CHARS} characters (got {chars})"
        )));
    }
    Ok((!reason.is_empty()).then(|| reason.to_owned()))
}

/// Applies an event. Trusts it (decide already checked it): an event that
/// makes no sense in the state leaves it as is, so evolve never panics.
pub fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
    if let OrderEvent::OrderPlaced {
        order_id,
        cart_id,
        customer_id,
        lines,
        total,
        personal_data,
    } = event
    {
        return Some(Order {
            id: *order_id,
            cart_id: *cart_id,
            customer_id: customer_id.clone(),
            status: OrderStatus::Placed,
            lines: lines.clone(),
            total: *total,
            cancel_reason: None,
            personal_data: personal_data.clone(),
        });
    }
    let mut order = state?;
    match event {
        OrderEvent::OrderPlaced { .. } => {}
        OrderEvent::OrderPreparationStarted {} => order.status = OrderStatus::Preparing,
        OrderEvent::OrderShipped {} => order.status = OrderStatus::Shipped,
        OrderEvent::OrderCancelled { reason } => {
            order.status = OrderStatus::Cancelled;
            order.cancel_reason = reason.clone();
        }
    }
    Some(order)
}

/// The state after these events, from an empty stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> OrderState {
    events.into_iter().fold(None, evolve)
}

#[cfg(test)]
mod tests;

//! Why a command was rejected. A rejected command appends nothing.
//!
//! Each variant is one `extensions.code` of the GraphQL contract, so the API
//! converts with [`DomainError::code`] and the variant's fields, never by
//! reading message text. Messages are written for the client: they say what
//! was wrong and hold no internal detail.

use crate::ids::Sku;
use crate::order::{OrderAction, OrderStatus};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a validation rule; the message says which.
    #[error("{0}")]
    BadUserInput(String),
    /// One input field breaks a rule: `field` as the contract spells it (e.g.
    /// `shippingAddress.postalCode`), for `extensions.field`.
    #[error("{field} {reason}")]
    InvalidField { field: String, reason: String },
    /// The cart, product or order named by the command does not exist; the
    /// field names what was missing, e.g. `"cart"` or `"product tea-1"`.
    #[error("{0} not found")]
    NotFound(String),
    #[error("the cart is not open: it has been checked out")]
    CartNotOpen,
    #[error("item {sku} is not in the cart")]
    ItemNotInCart { sku: Sku },
    #[error("the cart is empty")]
    EmptyCart,
    #[error("not enough stock for {sku}: requested {requested}, available {available}")]
    OutOfStock { sku: Sku, requested: u32, available: u32 },
    #[error("cannot {action} an order that is {from}")]
    InvalidOrderState { from: OrderStatus, action: OrderAction },
}

impl DomainError {
    /// The contract's `extensions.code` for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput(_) | Self::InvalidField { .. } => "BAD_USER_INPUT",
            Self::NotFound(_) => "NOT_FOUND",
            Self::CartNotOpen => "CART_NOT_OPEN",
            Self::ItemNotInCart { .. } => "ITEM_NOT_IN_CART",
            Self::EmptyCart => "EMPTY_CART",
            Self::OutOfStock { .. } => "OUT_OF_STOCK",
            Self::InvalidOrderState { .. } => "INVALID_ORDER_STATE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_contract_codes() {
        let sku = Sku::parse("tea").unwrap();
        let cases = [
            (DomainError::BadUserInput("x".into()), "BAD_USER_INPUT"),
            (
                DomainError::InvalidField {
                    field: "contactEmail".into(),
                    reason: "x".into(),
                },
                "BAD_USER_INPUT",
            ),
            (DomainError::NotFound("cart".into()), "NOT_FOUND"),
            (DomainError::CartNotOpen, "CART_NOT_OPEN"),
            (DomainError::ItemNotInCart { sku: sku.clone() }, "ITEM_NOT_IN_CART"),
            (DomainError::EmptyCart, "EMPTY_CART"),
            (
                DomainError::OutOfStock {
                    sku,
                    requested: 3,
                    available: 1,
                },
                "OUT_OF_STOCK",
            ),
            (
                DomainError::InvalidOrderState {
                    from: OrderStatus::Shipped,
                    action: OrderAction::Cancel,
                },
                "INVALID_ORDER_STATE",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn messages_say_what_went_wrong() {
        let e = DomainError::OutOfStock {
            sku: Sku::parse("tea").unwrap(),
            requested: 3,
            available: 1,
        };
        assert_eq!(e.to_string(), "not enough stock for tea: requested 3, available 1");
        let e = DomainError::InvalidOrderState {
            from: OrderStatus::Shipped,
            action: OrderAction::Cancel,
        };
        assert_eq!(e.to_string(), "cannot cancel an order that is SHIPPED");
        assert_eq!(DomainError::NotFound("cart".into()).to_string(), "cart not found");
    }
}

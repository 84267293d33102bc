//! A line of a cart, and of the order placed from it: an order's lines are its cart's lines
//! at checkout, so both are this one type.

use serde::{Deserialize, Serialize};

use crate::ids::Sku;
use crate::money::Money;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: Sku,
    /// The product's name when the line was added.
    pub name: String,
    pub quantity: u32,
    /// The product's price when the line was added (what the customer saw); later price
    /// changes do not touch it.
    pub unit_price: Money,
}

impl Line {
    /// Cannot overflow: the unit price is at most [`Money::MAX_PRICE`] and the quantity at
    /// most 999; saturating only keeps it total.
    pub fn line_total(&self) -> Money {
        self.unit_price.checked_mul(self.quantity).unwrap_or(Money::from_minor(i64::MAX))
    }
}

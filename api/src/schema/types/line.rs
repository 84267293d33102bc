//! A line of a cart or of an order: one type, rendered as the contract's two names
//! (`CartLine`, `OrderLine`), from a read model's [`projections::LineView`] or from the
//! domain's [`domain::Line`].

use std::borrow::Cow;
use std::marker::PhantomData;

use async_graphql::{Object, TypeName};

use super::Money;
use crate::schema::numbers::{line_total, to_int};

/// Which of the two the line is: only its GraphQL name differs.
pub trait LineOf: Send + Sync + 'static {
    const TYPE_NAME: &'static str;
}

pub struct OfCart;
pub struct OfOrder;

impl LineOf for OfCart {
    const TYPE_NAME: &'static str = "CartLine";
}

impl LineOf for OfOrder {
    const TYPE_NAME: &'static str = "OrderLine";
}

pub type CartLine = Line<OfCart>;
pub type OrderLine = Line<OfOrder>;

pub struct Line<K> {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: i64,
    of: PhantomData<K>,
}

impl<K> Line<K> {
    pub fn new(sku: String, name: String, quantity: u32, unit_price: i64) -> Self {
        Line {
            sku,
            name,
            quantity,
            unit_price,
            of: PhantomData,
        }
    }
}

// By hand: a derive would ask `K: Clone` / `K: Debug` of the marker.
impl<K> Clone for Line<K> {
    fn clone(&self) -> Self {
        Line::new(self.sku.clone(), self.name.clone(), self.quantity, self.unit_price)
    }
}

impl<K: LineOf> std::fmt::Debug for Line<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(K::TYPE_NAME)
            .field("sku", &self.sku)
            .field("name", &self.name)
            .field("quantity", &self.quantity)
            .field("unit_price", &self.unit_price)
            .finish()
    }
}

impl<K> From<projections::LineView> for Line<K> {
    fn from(l: projections::LineView) -> Self {
        Line::new(l.sku, l.name, l.quantity, l.unit_price)
    }
}

impl<K> From<&domain::Line> for Line<K> {
    fn from(l: &domain::Line) -> Self {
        Line::new(l.sku.as_str().to_owned(), l.name.clone(), l.quantity, l.unit_price.minor_units())
    }
}

impl<K: LineOf> TypeName for Line<K> {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(K::TYPE_NAME)
    }
}

#[Object(name_type)]
impl<K: LineOf> Line<K> {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn quantity(&self) -> i32 {
        to_int(self.quantity)
    }

    /// Price of one unit when it was put in the cart.
    async fn unit_price(&self) -> Money {
        Money(self.unit_price)
    }

    async fn line_total(&self) -> Money {
        Money(line_total(self.unit_price, self.quantity))
    }
}

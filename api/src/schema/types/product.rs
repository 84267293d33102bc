//! `Product`: a catalog entry, from the products read model or a product's state.

use async_graphql::Object;

use super::Money;
use crate::schema::numbers::to_int;

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
        to_int(self.available)
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

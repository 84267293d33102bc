//! `Money`: an amount in minor units, shown as a decimal and the store's currency.

use async_graphql::Object;

use crate::schema::numbers::decimal;
use crate::schema::scalars::Decimal;

/// An amount in the store's one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money(pub i64);

#[Object]
impl Money {
    async fn amount(&self) -> Decimal {
        decimal(self.0)
    }

    async fn currency_code(&self) -> &'static str {
        domain::CURRENCY_CODE
    }
}

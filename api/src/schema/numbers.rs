//! Every conversion between the contract's numbers (GraphQL `Int`, `Decimal`, cursor
//! strings) and the model's (unsigned counts and versions, money in minor units), one
//! function per conversion, so each rule (saturate, refuse negatives, round) lives once.

use domain::Money;

use super::scalars::Decimal;
use crate::error::ApiError;

/// A GraphQL `Int` from a count, quantity or version (saturating: versions beyond 2^31
/// would need a contract change, not a panic).
pub(crate) fn to_int(n: impl Into<u64>) -> i32 {
    i32::try_from(n.into()).unwrap_or(i32::MAX)
}

/// A version from the client's `Int`: not negative.
pub(crate) fn non_negative(name: &str, n: i32) -> Result<u64, ApiError> {
    u64::try_from(n).map_err(|_| ApiError::BadUserInput(format!("{name} must not be negative (got {n})")))
}

/// The version in an `after` cursor of a history page (cursors are version numbers).
pub(crate) fn parse_version_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .parse::<u64>()
        .map_err(|_| ApiError::BadUserInput("the `after` cursor is not one this server gave out".to_owned()))
}

/// Minor units of a line: unit price times quantity (saturating).
pub(crate) fn line_total(unit_price: i64, quantity: u32) -> i64 {
    unit_price.saturating_mul(i64::from(quantity))
}

/// The `Decimal` shown for an amount in minor units.
pub(crate) fn decimal(minor_units: i64) -> Decimal {
    Decimal(Money::from_minor(minor_units).to_decimal_string())
}

/// A price from the client's `Decimal` (the domain checks it: above 0, at most 2 decimals).
pub(crate) fn price(amount: &Decimal) -> Result<Money, ApiError> {
    Ok(Money::parse_decimal(&amount.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_saturate_and_versions_are_not_negative() {
        assert_eq!(to_int(7u32), 7);
        assert_eq!(to_int(u64::MAX), i32::MAX);
        assert_eq!(non_negative("version", 3).unwrap(), 3);
        assert!(non_negative("version", -1).is_err());
        assert_eq!(line_total(i64::MAX, 2), i64::MAX);
    }
}

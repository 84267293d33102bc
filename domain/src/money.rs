//! Money as an integer count of minor units (cents), never a float.
//!
//! The shop trades in one currency, so an amount needs no currency of its own;
//! [`CURRENCY_CODE`] is what the API reports next to every amount. The text
//! form is the contract's `Decimal`: a plain decimal string such as `"12.50"`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// ISO 4217 code of the one currency the shop trades in.
pub const CURRENCY_CODE: &str = "USD";

/// Minor units per major unit: USD has 2 decimal places.
const MINOR_PER_MAJOR: i64 = 100;

/// An amount in minor units. Serialised as a bare JSON integer (`1250` for
/// 12.50) so stored events never carry a float or a locale-dependent string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// The highest unit price accepted (10,000,000.00). It bounds every sum the
    /// domain makes (999 units x 100 lines x this is far below `i64::MAX`), so
    /// line totals and order totals cannot overflow.
    pub const MAX_PRICE: Money = Money(1_000_000_000);

    pub const fn from_minor(minor_units: i64) -> Self {
        Self(minor_units)
    }

    pub const fn minor_units(self) -> i64 {
        self.0
    }

    /// Parses a non-negative decimal with at most 2 decimal places: `"12"`,
    /// `"12.5"`, `"12.50"`, `"0.01"`. Rejects signs, exponents, whitespace,
    /// separators, a bare or trailing `.`, and more than 2 decimals, rather than
    /// rounding: a price the admin typed must be the price charged.
    pub fn parse_decimal(s: &str) -> Result<Money, DomainError> {
        let invalid = || {
            DomainError::BadUserInput(format!(
                "amount must be a decimal number with at most 2 decimal places, like \"12.50\" (got {s:?})"
            ))
        };
        let (whole, fraction) = match s.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (s, ""),
        };
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || (s.contains('.') && fraction.is_empty()) || fraction.len() > 2 {
            return Err(invalid());
        }
        let too_large = || DomainError::BadUserInput(format!("amount {s:?} is too large"));
        let whole: i64 = whole.parse().map_err(|_| too_large())?;
        // "5" after the point means 50 cents: pad to 2 digits.
        let cents: i64 = match fraction.len() {
            0 => 0,
            1 => i64::from(fraction.as_bytes()[0] - b'0') * 10,
            _ => fraction.parse().map_err(|_| invalid())?,
        };
        whole
            .checked_mul(MINOR_PER_MAJOR)
            .and_then(|minor| minor.checked_add(cents))
            .map(Money)
            .ok_or_else(too_large)
    }

    /// Parses a price: a decimal as in [`Money::parse_decimal`] that is also a
    /// valid price (see [`Money::validate_price`]).
    pub fn parse_price(s: &str) -> Result<Money, DomainError> {
        Self::parse_decimal(s)?.validate_price()
    }

    /// A price must be above zero (a free item would be an admin's slip) and at
    /// most [`Money::MAX_PRICE`].
    pub fn validate_price(self) -> Result<Money, DomainError> {
        if self.0 <= 0 {
            Err(DomainError::BadUserInput(format!("price must be greater than 0 (got {self})")))
        } else if self > Self::MAX_PRICE {
            Err(DomainError::BadUserInput(format!(
                "price must be at most {} (got {self})",
                Self::MAX_PRICE
            )))
        } else {
            Ok(self)
        }
    }

    /// The contract's `Decimal` text: always 2 decimals, `"12.50"`, `"0.05"`.
    pub fn to_decimal_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = MINOR_PER_MAJOR.unsigned_abs();
        format!("{sign}{}.{:02}", abs / per, abs % per)
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// The price of `quantity` units at this unit price.
    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(i64::from(quantity)).map(Money)
    }

    /// Sums amounts; `None` on overflow.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Money>) -> Option<Money> {
        amounts.into_iter().try_fold(Money::ZERO, |total, amount| total.checked_add(amount))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_decimals_into_minor_units() {
        for (text, minor) in [
            ("12.50", 1250),
            ("12.5", 1250),
            ("12", 1200),
            ("0.01", 1),
            ("0.10", 10),
            ("0", 0),
            ("0.00", 0),
            ("007.05", 705),
            ("92233720368547758.07", i64::MAX),
        ] {
            assert_eq!(Money::parse_decimal(text), Ok(Money::from_minor(minor)), "{text}");
        }
    }

    #[test]
    fn rejects_garbage_signs_and_more_than_two_decimals() {
        for bad in [
            "", ".", "1.", ".5", "1.234", "1.000", "-1", "+1", "-0.01", "1e3", " 1", "1 ", "1,00", "1.2.3", "abc", "12.5a", "١٢", "NaN", "inf",
        ] {
            let err = Money::parse_decimal(bad).unwrap_err();
            assert_eq!(err.code(), "BAD_USER_INPUT", "{bad:?}");
        }
    }

    #[test]
    fn rejects_amounts_that_overflow() {
        assert!(Money::parse_decimal("92233720368547758.08").is_err());
        assert!(Money::parse_decimal("99999999999999999999999").is_err());
    }

    #[test]
    fn a_price_is_positive_and_bounded() {
        assert_eq!(Money::parse_price("0.01"), Ok(Money::from_minor(1)));
        assert_eq!(Money::parse_price("10000000.00"), Ok(Money::MAX_PRICE));
        assert!(Money::parse_price("0").is_err());
        assert!(Money::parse_price("0.00").is_err());
        assert!(Money::parse_price("10000000.01").is_err());
        assert!(Money::from_minor(-5).validate_price().is_err());
    }

    #[test]
    fn formats_with_two_decimals() {
        assert_eq!(Money::from_minor(1250).to_decimal_string(), "12.50");
        assert_eq!(Money::from_minor(5).to_decimal_string(), "0.05");
        assert_eq!(Money::from_minor(0).to_decimal_string(), "0.00");
        assert_eq!(Money::from_minor(100).to_string(), "1.00");
        assert_eq!(Money::from_minor(-1250).to_decimal_string(), "-12.50");
        assert_eq!(Money::from_minor(i64::MIN).to_decimal_string(), "-92233720368547758.08");
    }

    #[test]
    fn serialises_as_an_integer_of_minor_units() {
        assert_eq!(serde_json::to_string(&Money::from_minor(1250)).unwrap(), "1250");
        assert_eq!(serde_json::from_str::<Money>("1250").unwrap(), Money::from_minor(1250));
        assert!(serde_json::from_str::<Money>("12.5").is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        let m = Money::from_minor(250);
        assert_eq!(m.checked_mul(3), Some(Money::from_minor(750)));
        assert_eq!(m.checked_add(m), Some(Money::from_minor(500)));
        assert_eq!(m.checked_sub(m), Some(Money::ZERO));
        assert_eq!(Money::from_minor(i64::MAX).checked_add(Money::from_minor(1)), None);
        assert_eq!(Money::from_minor(i64::MAX).checked_mul(2), None);
        assert_eq!(Money::checked_sum([m, m, m]), Some(Money::from_minor(750)));
        assert_eq!(Money::checked_sum([]), Some(Money::ZERO));
        assert_eq!(Money::checked_sum([Money::from_minor(i64::MAX), Money::from_minor(1)]), None);
    }

    #[test]
    fn the_largest_cart_cannot_overflow() {
        let line = Money::MAX_PRICE.checked_mul(999).unwrap();
        assert!(Money::checked_sum(std::iter::repeat_n(line, 100)).is_some());
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(minor in 0i64..=i64::MAX) {
            let money = Money::from_minor(minor);
            prop_assert_eq!(Money::parse_decimal(&money.to_decimal_string()), Ok(money));
        }

        #[test]
        fn parse_matches_integer_arithmetic(whole in 0i64..1_000_000_000, cents in 0i64..100) {
            let text = format!("{whole}.{cents:02}");
            prop_assert_eq!(Money::parse_decimal(&text), Ok(Money::from_minor(whole * 100 + cents)));
        }

        #[test]
        fn three_decimals_are_always_rejected(whole in 0u32.., frac in 0u32..1000) {
            let text = format!("{whole}.{frac:03}");
            prop_assert!(Money::parse_decimal(&text).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,30}") {
            let _ = Money::parse_decimal(&s);
        }
    }
}

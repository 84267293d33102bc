//! The contract's scalars. A value that does not parse is refused while coercing
//! arguments and variables; [`crate::error::coded_response`] gives that error BAD_USER_INPUT.
//!
//! Our own newtypes rather than async-graphql's built-in `UUID`/`DateTime`/`JSON`, so
//! the wire format is ours (lowercase hyphenated UUIDs, RFC 3339 in UTC, positions as
//! digit strings) and never changes with a dependency upgrade. Never expose
//! `uuid::Uuid` or `time::OffsetDateTime` directly in a GraphQL type: their built-in
//! scalars would register a second `UUID` or `DateTime`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// RFC 4122 UUID as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UuidScalar(pub Uuid);

/// RFC 4122 UUID as a string.
#[Scalar(name = "UUID")]
impl ScalarType for UuidScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Uuid::parse_str(s)
                .map(UuidScalar)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not a UUID"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.hyphenated().to_string())
    }
}

impl From<Uuid> for UuidScalar {
    fn from(u: Uuid) -> Self {
        UuidScalar(u)
    }
}

/// RFC 3339 timestamp, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime(pub OffsetDateTime);

/// RFC 3339 timestamp, UTC.
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
                .map(|t| DateTime(t.to_offset(UtcOffset::UTC)))
                .map_err(|_| InputValueError::custom(format!("{s:?} is not an RFC 3339 timestamp such as \"2026-05-01T12:00:00Z\""))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        // Formatting a UTC OffsetDateTime as RFC 3339 only fails for years beyond 9999.
        Value::String(self.0.to_offset(UtcOffset::UTC).format(&Rfc3339).unwrap_or_default())
    }
}

impl From<OffsetDateTime> for DateTime {
    fn from(t: OffsetDateTime) -> Self {
        DateTime(t)
    }
}

/// A position in the global event log: a decimal string of an unsigned 64-bit integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub store::Position);

/// A position in the global event log: a decimal string of an unsigned 64-bit integer.
#[Scalar(name = "Position")]
impl ScalarType for Position {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u64>()
                .map(|p| Position(store::Position(p)))
                .map_err(|_| InputValueError::custom(format!("{s:?} does not fit an unsigned 64-bit integer"))),
            Value::String(s) => Err(InputValueError::custom(format!("{s:?} is not a position: a string of digits"))),
            // Lenient: a small position sent as a JSON number is unambiguous.
            Value::Number(n) => n
                .as_u64()
                .map(|p| Position(store::Position(p)))
                .ok_or_else(|| InputValueError::custom("a position is an unsigned integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0 .0.to_string())
    }
}

impl From<store::Position> for Position {
    fn from(p: store::Position) -> Self {
        Position(p)
    }
}

/// An exact decimal number as a string, e.g. "19.99". The scalar checks the syntax;
/// what a field accepts (a price: above 0, at most 2 decimals) is the domain's rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal(pub String);

/// An exact decimal number as a string, e.g. "19.99".
#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) if is_decimal(s) => Ok(Decimal(s.clone())),
            Value::String(s) => Err(InputValueError::custom(format!("{s:?} is not a decimal such as \"12.50\""))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `-?[0-9]+(\.[0-9]+)?`
fn is_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// Arbitrary JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub serde_json::Value);

/// Arbitrary JSON.
#[Scalar(name = "JSON")]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        value
            .into_json()
            .map(Json)
            .map_err(|_| InputValueError::custom("not representable as JSON"))
    }

    fn to_value(&self) -> Value {
        Value::from_json(self.0.clone()).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_digits_with_an_optional_fraction() {
        for ok in ["0", "12.50", "-1.5", "007"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", ".", "1.", ".5", "1e3", "+1", "1,5", " 1", "abc", "--1"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn positions_are_digit_strings() {
        assert_eq!(
            <Position as ScalarType>::parse(Value::String("42".into())).unwrap(),
            Position(store::Position(42))
        );
        assert!(<Position as ScalarType>::parse(Value::String("-1".into())).is_err());
        assert!(<Position as ScalarType>::parse(Value::String("18446744073709551616".into())).is_err());
        assert_eq!(Position(store::Position(u64::MAX)).to_value(), Value::String(u64::MAX.to_string()));
    }

    #[test]
    fn timestamps_are_utc() {
        let t = <DateTime as ScalarType>::parse(Value::String("2026-05-01T14:00:00+02:00".into())).unwrap();
        assert_eq!(t.to_value(), Value::String("2026-05-01T12:00:00Z".into()));
        assert!(<DateTime as ScalarType>::parse(Value::String("yesterday".into())).is_err());
    }
}

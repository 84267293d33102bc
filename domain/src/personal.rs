//! Personal data on an order: where it ships and whom to tell.
//!
//! The domain validates it ([`PersonalData::new`]) but never stores it in the clear: the
//! write side seals it under the customer's data key before it goes into an event
//! ([`SealedPersonalData`], opaque here), so erasing the customer's key erases it from
//! every event, snapshot and read model at once (crypto-shredding, see the `vault` crate).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// The longest text field of an address, in characters.
pub const MAX_ADDRESS_FIELD_CHARS: usize = 200;
/// The longest postal code, in characters.
pub const MAX_POSTAL_CODE_CHARS: usize = 20;
/// The longest email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// A delivery address. `country` is an ISO 3166-1 alpha-2 code, upper case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// What an order may carry about the person: both parts optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub shipping_address: Option<Address>,
    pub contact_email: Option<String>,
}

impl PersonalData {
    /// Checks and normalises the input: text trimmed, an empty `line2` read as none, the
    /// country upper-cased and a known alpha-2 code, the email one plausible address.
    /// A rejection names the field as the contract spells it, e.g.
    /// `shippingAddress.postalCode`.
    pub fn new(shipping_address: Option<Address>, contact_email: Option<String>) -> Result<Self, DomainError> {
        let shipping_address = shipping_address.map(valid_address).transpose()?;
        let contact_email = contact_email.map(|e| valid_email(&e)).transpose()?;
        Ok(PersonalData {
            shipping_address,
            contact_email,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.shipping_address.is_none() && self.contact_email.is_none()
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> DomainError {
    DomainError::InvalidField {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn required(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    optional(field, value, max).map(|v| v.unwrap_or_default())
}

fn optional(field: &str, value: &str, max: usize) -> Result<Option<String>, DomainError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars > max {
        return Err(invalid(field, format!("must be at most {max} characters (got {chars})")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn valid_address(a: Address) -> Result<Address, DomainError> {
    let country = a.country.trim().to_ascii_uppercase();
    if isocountry::CountryCode::for_alpha2(&country).is_err() {
        return Err(invalid(
            "shippingAddress.country",
            format!("{:?} is not an ISO 3166-1 alpha-2 country code", a.country),
        ));
    }
    Ok(Address {
        name: required("shippingAddress.name", &a.name, MAX_ADDRESS_FIELD_CHARS)?,
        line1: required("shippingAddress.line1", &a.line1, MAX_ADDRESS_FIELD_CHARS)?,
        line2: match &a.line2 {
            Some(line2) => optional("shippingAddress.line2", line2, MAX_ADDRESS_FIELD_CHARS)?,
            None => None,
        },
        city: required("shippingAddress.city", &a.city, MAX_ADDRESS_FIELD_CHARS)?,
        postal_code: required("shippingAddress.postalCode", &a.postal_code, MAX_POSTAL_CODE_CHARS)?,
        country,
    })
}

/// One `local@domain` with a dotted domain and no spaces: what a shop can check without
/// sending mail. Deliverability is the mail server's to say.
fn valid_email(email: &str) -> Result<String, DomainError> {
    const FIELD: &str = "contactEmail";
    let email = required(FIELD, email, MAX_EMAIL_CHARS)?;
    let plausible = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !plausible {
        return Err(invalid(FIELD, "must be an email address like name@example.com"));
    }
    Ok(email)
}

/// Personal data sealed by the write side: an opaque text naming the data key it was
/// sealed with. Readable only while that key exists.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedPersonalData(String);

impl SealedPersonalData {
    pub fn new(sealed: String) -> Self {
        Self(sealed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Never prints the ciphertext either: logs need not carry it.
impl fmt::Debug for SealedPersonalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedPersonalData({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Address {
        Address {
            name: " Ada Lovelace ".into(),
            line1: "12 St James's Square".into(),
            line2: Some("  ".into()),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "gb".into(),
        }
    }

    #[test]
    fn a_valid_address_and_email_are_normalised() {
        let data = PersonalData::new(Some(address()), Some(" ada@example.org ".into())).unwrap();
        let a = data.shipping_address.unwrap();
        assert_eq!(a.name, "Ada Lovelace");
        assert_eq!(a.line2, None);
        assert_eq!(a.country, "GB");
        assert_eq!(data.contact_email.as_deref(), Some("ada@example.org"));
        assert!(PersonalData::new(None, None).unwrap().is_empty());
    }

    #[test]
    fn each_rejection_names_its_field() {
        type Change = fn(&mut Address);
        let cases: [(Change, &str); 7] = [
            (|a| a.name = " ".into(), "shippingAddress.name"),
            (|a| a.line1 = String::new(), "shippingAddress.line1"),
            (|a| a.line2 = Some("x".repeat(201)), "shippingAddress.line2"),
            (|a| a.city = "a\u{7}b".into(), "shippingAddress.city"),
            (|a| a.postal_code = "1".repeat(21), "shippingAddress.postalCode"),
            (|a| a.country = "XX".into(), "shippingAddress.country"),
            (|a| a.country = "GBR".into(), "shippingAddress.country"),
        ];
        for (change, field) in cases {
            let mut a = address();
            change(&mut a);
            match PersonalData::new(Some(a), None) {
                Err(DomainError::InvalidField { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn implausible_emails_are_rejected() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.org",
            "ada@.org",
            "ada@x..org",
        ] {
            let err = PersonalData::new(None, Some(bad.into())).unwrap_err();
            assert_eq!(err.code(), "BAD_USER_INPUT", "{bad:?}");
            assert!(
                matches!(err, DomainError::InvalidField { ref field, .. } if field == "contactEmail"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sealed_data_does_not_print_its_text() {
        let sealed = SealedPersonalData::new("v1.secret".into());
        assert!(!format!("{sealed:?}").contains("secret"));
        assert_eq!(serde_json::to_string(&sealed).unwrap(), "\"v1.secret\"");
    }
}

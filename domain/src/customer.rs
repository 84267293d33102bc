//! The customer stream (`customer-<id>`): what happened to a person rather than to one of
//! their carts or orders. Today that is one fact: their personal data was erased.
//!
//! Erasure itself is the key's deletion (crypto-shredding, in the `vault` crate); the
//! event records that it happened, for read models to drop what they derived and for the
//! audit trail. Erasing again is answered with the earlier erasure unless personal data
//! was sealed since (the customer holds a data key again): then it is a new erasure.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::event::{Event, EventType};
use crate::ids::{CustomerId, CUSTOMER_CATEGORY};

/// Bump when the shape of [`Customer`] changes (see `order::STATE_SCHEMA_VERSION`).
pub const STATE_SCHEMA_VERSION: i32 = 1;

/// A customer with at least one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    /// How many times their personal data was erased.
    pub erasures: u32,
}

pub type CustomerState = Option<Customer>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomerCommand {
    /// `holds_data_key`: personal data was sealed for them since the last erasure (the
    /// caller looked their data key up).
    ErasePersonalData { customer_id: CustomerId, holds_data_key: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CustomerEvent {
    #[serde(rename = "PersonalDataErased")]
    PersonalDataErased { customer_id: CustomerId },
}

impl CustomerEvent {
    pub const PERSONAL_DATA_ERASED: EventType = EventType {
        name: "PersonalDataErased",
        schema_version: 1,
    };
}

impl Event for CustomerEvent {
    const CATEGORY: &'static str = CUSTOMER_CATEGORY;
    const TYPES: &'static [EventType] = &[Self::PERSONAL_DATA_ERASED];

    fn kind(&self) -> EventType {
        match self {
            Self::PersonalDataErased { .. } => Self::PERSONAL_DATA_ERASED,
        }
    }
}

/// An erasure appends `PersonalDataErased` the first time, and again whenever the
/// customer holds a data key; otherwise nothing (the earlier erasure stands).
pub fn decide(state: &CustomerState, command: CustomerCommand) -> Result<Vec<CustomerEvent>, DomainError> {
    match command {
        CustomerCommand::ErasePersonalData { customer_id, holds_data_key } => {
            let erased_before = state.as_ref().is_some_and(|c| c.erasures > 0);
            if erased_before && !holds_data_key {
                Ok(vec![])
            } else {
                Ok(vec![CustomerEvent::PersonalDataErased { customer_id }])
            }
        }
    }
}

pub fn evolve(state: CustomerState, event: &CustomerEvent) -> CustomerState {
    match event {
        CustomerEvent::PersonalDataErased { customer_id } => {
            let erasures = state.map_or(0, |c| c.erasures);
            Some(Customer {
                id: customer_id.clone(),
                erasures: erasures.saturating_add(1),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erase(state: &CustomerState, holds_data_key: bool) -> Vec<CustomerEvent> {
        let customer_id = CustomerId::parse("ada").unwrap();
        decide(state, CustomerCommand::ErasePersonalData { customer_id, holds_data_key }).unwrap()
    }

    #[test]
    fn the_first_erasure_is_recorded_with_or_without_a_key() {
        for holds_data_key in [false, true] {
            let events = erase(&None, holds_data_key);
            assert_eq!(events.len(), 1);
            assert_eq!(evolve(None, &events[0]).unwrap().erasures, 1);
        }
    }

    #[test]
    fn erasing_again_records_nothing_unless_data_was_sealed_since() {
        let erased = erase(&None, false).iter().fold(None, evolve);
        assert!(erase(&erased, false).is_empty());
        let again = erase(&erased, true);
        assert_eq!(again.len(), 1);
        assert_eq!(again.iter().fold(erased, evolve).unwrap().erasures, 2);
    }

    #[test]
    fn the_event_round_trips_under_its_stable_name() {
        let event = erase(&None, false).remove(0);
        assert_eq!(event.event_type(), "PersonalDataErased");
        let data = serde_json::to_string(&event.to_data()).unwrap();
        assert_eq!(data, r#"{"customer_id":"ada"}"#);
        assert_eq!(CustomerEvent::from_json("PersonalDataErased", &data).unwrap(), event);
    }
}

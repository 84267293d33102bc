//! What all events share: a stable type name, a schema version, and a JSON
//! data object.
//!
//! The store keeps `type`, `schema_version` and `data` in separate columns, so
//! an event is encoded as its data object without the type ([`Event::to_json`],
//! or [`Event::to_data`] as a tree) and decoded from the pair ([`Event::from_json`],
//! [`Event::from_data`]).
//!
//! Type names are written out (the `EventType` constants and the
//! `#[serde(rename)]` on each variant, kept equal by a test) and never derived
//! from Rust names: renaming a variant must not orphan stored events. The
//! domain knows only the current schema of each type; the store upcasts older
//! versions before calling [`Event::from_data`].

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::cart::CartEvent;
use crate::customer::CustomerEvent;
use crate::order::OrderEvent;
use crate::product::ProductEvent;
use tagged::decode_tagged;

/// An event type's stable name and the version of its current data schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventType {
    pub name: &'static str,
    pub schema_version: i32,
}

/// Why stored data could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error("data of event type {event_type} does not match its current schema: {source}")]
    InvalidData {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Implemented by the event enums of each aggregate so that the store can encode and
/// decode any of them. The enums are serde adjacently tagged
/// (`{"type": ..., "data": {...}}`) with an explicit rename on every variant;
/// the provided methods lean on that.
pub trait Event: Clone + Debug + PartialEq + Serialize + DeserializeOwned {
    /// The stream category the events of this aggregate live in.
    const CATEGORY: &'static str;
    /// Every event type of this aggregate, with its current schema version.
    const TYPES: &'static [EventType];

    /// This event's type.
    fn kind(&self) -> EventType;

    /// The stable type name, e.g. `"ItemAddedToCart"`.
    fn event_type(&self) -> &'static str {
        self.kind().name
    }

    /// The schema version the data of [`Event::to_data`] is written in.
    fn schema_version(&self) -> i32 {
        self.kind().schema_version
    }

    /// The declared type of a type name of this aggregate.
    fn type_named(event_type: &str) -> Option<EventType> {
        Self::TYPES.iter().find(|t| t.name == event_type).copied()
    }

    /// The current schema version of a type name of this aggregate.
    fn current_schema_version(event_type: &str) -> Option<i32> {
        Self::type_named(event_type).map(|t| t.schema_version)
    }

    /// The data object, without the type. Field names are snake_case and
    /// money is integer minor units.
    fn to_data(&self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or_else(|e| panic!("event {self:?} did not encode to JSON: {e}"))
    }

    /// [`Event::to_data`] as JSON text, what the store writes, made without a tree: the
    /// tagged event serialised (`{"type":"<name>","data":<data>}`, or no `data` for an
    /// event without any) and its envelope cut off. Through a `Value` (a tree, its data
    /// taken out, printed) an event took 850 ns to encode, this way 330 (issue #11).
    fn to_json(&self) -> String {
        // Unreachable: every event serialises to a tagged object of plain data (strings,
        // integers, lists, maps keyed by strings).
        let unreachable = |why: &str| -> ! { panic!("event {self:?} did not serialise to a tagged object: {why}") };
        let mut tagged = serde_json::to_string(self).unwrap_or_else(|e| unreachable(&e.to_string()));
        // Type names are identifiers: no quote or escape inside the tag's string.
        let Some(after_name) = tagged
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split_once('"'))
            .map(|(_, rest)| rest)
        else {
            unreachable(&tagged);
        };
        if after_name == "}" {
            return "{}".to_owned();
        }
        let Some(data_len) = after_name.strip_prefix(r#","data":"#).and_then(|d| d.strip_suffix('}')).map(str::len) else {
            unreachable(&tagged);
        };
        // Cut in place: the envelope's closing brace, then everything before the data.
        tagged.pop();
        tagged.drain(..tagged.len() - data_len);
        tagged
    }

    /// Decodes data in the current schema of `event_type`.
    fn from_data(event_type: &str, data: Value) -> Result<Self, DecodeError> {
        let kind = Self::type_named(event_type).ok_or_else(|| DecodeError::UnknownEventType(event_type.to_owned()))?;
        decode_tagged(kind.name, data).map_err(|source| DecodeError::InvalidData {
            event_type: event_type.to_owned(),
            source,
        })
    }

    /// [`Event::from_data`] from the JSON text of the data, as the store reads it: decoded
    /// straight into the event in one pass, with no `serde_json::Value` between and no
    /// separate check that the text is JSON (the decode checks it, trailing text included).
    /// (Building a `Value` per event, then decoding it, was most of the cost of loading an
    /// aggregate in the profile of issue #11; checking the text, then decoding it, a tenth of
    /// reading the feed.)
    fn from_json(event_type: &str, data: &str) -> Result<Self, DecodeError> {
        let kind = Self::type_named(event_type).ok_or_else(|| DecodeError::UnknownEventType(event_type.to_owned()))?;
        let invalid = |source| DecodeError::InvalidData {
            event_type: event_type.to_owned(),
            source,
        };
        let mut text = serde_json::Deserializer::from_str(data);
        let event = decode_tagged(kind.name, &mut text).map_err(invalid)?;
        text.end().map_err(invalid)?;
        Ok(event)
    }
}

/// An event of any aggregate, for readers of the global log (projections,
/// subscriptions) that see every stream. Type names are unique across
/// aggregates, so the type alone says which aggregate an event belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyEvent {
    Cart(CartEvent),
    Product(ProductEvent),
    Order(OrderEvent),
    Customer(CustomerEvent),
}

impl AnyEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Cart(e) => e.event_type(),
            Self::Product(e) => e.event_type(),
            Self::Order(e) => e.event_type(),
            Self::Customer(e) => e.event_type(),
        }
    }

    pub fn schema_version(&self) -> i32 {
        match self {
            Self::Cart(e) => e.schema_version(),
            Self::Product(e) => e.schema_version(),
            Self::Order(e) => e.schema_version(),
            Self::Customer(e) => e.schema_version(),
        }
    }

    pub fn category(&self) -> &'static str {
        match self {
            Self::Cart(_) => CartEvent::CATEGORY,
            Self::Product(_) => ProductEvent::CATEGORY,
            Self::Order(_) => OrderEvent::CATEGORY,
            Self::Customer(_) => CustomerEvent::CATEGORY,
        }
    }

    pub fn to_data(&self) -> Value {
        match self {
            Self::Cart(e) => e.to_data(),
            Self::Product(e) => e.to_data(),
            Self::Order(e) => e.to_data(),
            Self::Customer(e) => e.to_data(),
        }
    }

    /// The current schema version of any known type name.
    pub fn current_schema_version(event_type: &str) -> Option<i32> {
        CartEvent::current_schema_version(event_type)
            .or_else(|| ProductEvent::current_schema_version(event_type))
            .or_else(|| OrderEvent::current_schema_version(event_type))
            .or_else(|| CustomerEvent::current_schema_version(event_type))
    }

    /// Decodes data in the current schema of any known type.
    pub fn from_data(event_type: &str, data: Value) -> Result<Self, DecodeError> {
        Self::from_json(event_type, &data.to_string())
    }

    /// [`AnyEvent::from_data`] from the JSON text of the data ([`Event::from_json`]).
    pub fn from_json(event_type: &str, data: &str) -> Result<Self, DecodeError> {
        if CartEvent::current_schema_version(event_type).is_some() {
            CartEvent::from_json(event_type, data).map(Self::Cart)
        } else if ProductEvent::current_schema_version(event_type).is_some() {
            ProductEvent::from_json(event_type, data).map(Self::Product)
        } else if OrderEvent::current_schema_version(event_type).is_some() {
            OrderEvent::from_json(event_type, data).map(Self::Order)
        } else if CustomerEvent::current_schema_version(event_type).is_some() {
            CustomerEvent::from_json(event_type, data).map(Self::Customer)
        } else {
            Err(DecodeError::UnknownEventType(event_type.to_owned()))
        }
    }
}

impl From<CartEvent> for AnyEvent {
    fn from(e: CartEvent) -> Self {
        Self::Cart(e)
    }
}

impl From<ProductEvent> for AnyEvent {
    fn from(e: ProductEvent) -> Self {
        Self::Product(e)
    }
}

impl From<OrderEvent> for AnyEvent {
    fn from(e: OrderEvent) -> Self {
        Self::Order(e)
    }
}

impl From<CustomerEvent> for AnyEvent {
    fn from(e: CustomerEvent) -> Self {
        Self::Customer(e)
    }
}

mod tagged;
#[cfg(test)]
mod tests;

//! Old event schemas stay readable forever: stored bytes are never rewritten; on read, a
//! chain of upcasters lifts each (type, schema version) one step at a time to the current
//! schema. Upcasters are pure functions of the stored data: they must not consult today's
//! catalog or anything else that changes, or history would change with it.

use serde_json::{json, Value};

use crate::error::StoreError;
use crate::event::EventData;

/// One step: lifts `event_type` from `from` to `from + 1`.
struct Upcaster {
    event_type: &'static str,
    from: i32,
    lift: fn(Value) -> Result<Value, String>,
}

/// Every evolution ever shipped, oldest first.
const CHAIN: &[Upcaster] = &[Upcaster {
    event_type: "ItemAddedToCart",
    from: 1,
    lift: item_added_v1_to_v2,
}];

/// ItemAddedToCart v1 is the seed article's `{"item_id": "apple", "quantity": 2}`: no price
/// and no name. v2 is `{sku, name, quantity, unit_price}`. The seed sold nothing by price,
/// so the line is lifted at price 0 (what was agreed then) with the item id as its name,
/// rather than at today's catalog price, which an upcaster cannot know and must not guess.
fn item_added_v1_to_v2(data: Value) -> Result<Value, String> {
    let item_id = data.get("item_id").and_then(Value::as_str).ok_or("missing string field item_id")?;
    let quantity = data.get("quantity").and_then(Value::as_u64).ok_or("missing integer field quantity")?;
    Ok(json!({ "sku": item_id, "name": item_id, "quantity": quantity, "unit_price": 0 }))
}

/// Lifts stored data to the newest schema this code knows; returns the new schema version.
/// Data already current is passed on as it is, never parsed.
pub fn upcast(event_type: &str, mut schema_version: i32, data: EventData) -> Result<(i32, EventData), StoreError> {
    let stored = schema_version;
    let mut steps = CHAIN.iter().filter(|u| u.event_type == event_type && u.from >= stored).peekable();
    if steps.peek().is_none() {
        return Ok((schema_version, data));
    }
    let mut tree = data.to_value();
    for step in steps {
        if step.from == schema_version {
            tree = (step.lift)(tree).map_err(|reason| StoreError::Upcast {
                event_type: event_type.to_owned(),
                schema_version,
                reason,
            })?;
            schema_version += 1;
        }
    }
    Ok((schema_version, EventData::from(tree)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_item_added_lifts_to_current_schema() {
        let (v, data) = upcast("ItemAddedToCart", 1, json!({"item_id": "apple", "quantity": 3}).into()).unwrap();
        assert_eq!(v, 2);
        assert_eq!(data, json!({"sku": "apple", "name": "apple", "quantity": 3, "unit_price": 0}));
    }

    #[test]
    fn current_schema_passes_through_untouched() {
        // Byte for byte: data that needs no step is not parsed and written again.
        let text = r#"{"unit_price":120, "sku":"apple","name":"Apple","quantity":1}"#;
        let (v, data) = upcast("ItemAddedToCart", 2, EventData::from_json(text.to_owned()).unwrap()).unwrap();
        assert_eq!((v, data.get()), (2, text));
        let (v, data) = upcast("CartCreated", 1, EventData::from_json("{}".to_owned()).unwrap()).unwrap();
        assert_eq!((v, data.get()), (1, "{}"));
    }

    #[test]
    fn malformed_old_event_is_an_upcast_error_not_a_panic() {
        let err = upcast("ItemAddedToCart", 1, json!({"quantity": 3}).into()).unwrap_err();
        assert!(matches!(err, StoreError::Upcast { schema_version: 1, .. }), "{err:?}");
    }
}

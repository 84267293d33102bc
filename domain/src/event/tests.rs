//! The wire format of every event, pinned: changing one of these is a schema
//! change that needs a new schema version and an upcaster in the store.

use serde_json::json;

use super::*;
use crate::cart::CartEvent;
use crate::customer::CustomerEvent;
use crate::line::Line;
use crate::order::OrderEvent;
use crate::personal::SealedPersonalData;
use crate::product::ProductEvent;
use crate::testing::{cart_id, cents, customer, order_id, sku};

/// One event of every type, with its expected type name, schema version and
/// data object.
fn golden() -> Vec<(AnyEvent, &'static str, i32, Value)> {
    let cart = cart_id(1).to_string();
    let order = order_id(2).to_string();
    vec![
        (
            CartEvent::CartCreated {
                cart_id: cart_id(1),
                customer_id: customer("alice"),
            }
            .into(),
            "CartCreated",
            1,
            json!({"cart_id": cart, "customer_id": "alice"}),
        ),
        (
            CartEvent::ItemAddedToCart {
                sku: sku("tea"),
                name: "Green tea".into(),
                quantity: 2,
                unit_price: cents(450),
            }
            .into(),
            "ItemAddedToCart",
            2,
            json!({"sku": "tea", "name": "Green tea", "quantity": 2, "unit_price": 450}),
        ),
        (
            CartEvent::ItemQuantityChanged {
                sku: sku("tea"),
                quantity: 5,
            }
            .into(),
            "ItemQuantityChanged",
            1,
            json!({"sku": "tea", "quantity": 5}),
        ),
        (
            CartEvent::ItemRemovedFromCart { sku: sku("tea") }.into(),
            "ItemRemovedFromCart",
            1,
            json!({"sku": "tea"}),
        ),
        (CartEvent::CartCleared {}.into(), "CartCleared", 1, json!({})),
        (
            CartEvent::CartCheckedOut { order_id: order_id(2) }.into(),
            "CartCheckedOut",
            1,
            json!({"order_id": order}),
        ),
        (
            ProductEvent::ProductRegistered {
                sku: sku("tea"),
                name: "Green tea".into(),
                price: cents(450),
            }
            .into(),
            "ProductRegistered",
            1,
            json!({"sku": "tea", "name": "Green tea", "price": 450}),
        ),
        (
            ProductEvent::ProductPriceChanged { price: cents(500) }.into(),
            "ProductPriceChanged",
            1,
            json!({"price": 500}),
        ),
        (
            ProductEvent::StockReceived { quantity: 10 }.into(),
            "StockReceived",
            1,
            json!({"quantity": 10}),
        ),
        (
            ProductEvent::StockReserved {
                order_id: order_id(2),
                quantity: 3,
            }
            .into(),
            "StockReserved",
            1,
            json!({"order_id": order, "quantity": 3}),
        ),
        (
            ProductEvent::StockReleased {
                order_id: order_id(2),
                quantity: 3,
            }
            .into(),
            "StockReleased",
            1,
            json!({"order_id": order, "quantity": 3}),
        ),
        (
            ProductEvent::StockShipped {
                order_id: order_id(2),
                quantity: 3,
            }
            .into(),
            "StockShipped",
            1,
            json!({"order_id": order, "quantity": 3}),
        ),
        (
            OrderEvent::OrderPlaced {
                order_id: order_id(2),
                cart_id: cart_id(1),
                customer_id: customer("alice"),
                lines: vec![Line {
                    sku: sku("tea"),
                    name: "Green tea".into(),
                    quantity: 2,
                    unit_price: cents(450),
                }],
                total: cents(900),
                personal_data: None,
            }
            .into(),
            "OrderPlaced",
            1,
            json!({
                "order_id": order,
                "cart_id": cart,
                "customer_id": "alice",
                "lines": [{"sku": "tea", "name": "Green tea", "quantity": 2, "unit_price": 450}],
                "total": 900
            }),
        ),
        // Personal data is optional and additive: an order without it has the data of
        // schema 1 as first written, so no upcaster is needed.
        (
            OrderEvent::OrderPlaced {
                order_id: order_id(2),
                cart_id: cart_id(1),
                customer_id: customer("alice"),
                lines: vec![],
                total: cents(0),
                personal_data: Some(SealedPersonalData::new("v1.sealed".into())),
            }
            .into(),
            "OrderPlaced",
            1,
            json!({
                "order_id": order,
                "cart_id": cart,
                "customer_id": "alice",
                "lines": [],
                "total": 0,
                "personal_data": "v1.sealed"
            }),
        ),
        (OrderEvent::OrderPreparationStarted {}.into(), "OrderPreparationStarted", 1, json!({})),
        (OrderEvent::OrderShipped {}.into(), "OrderShipped", 1, json!({})),
        (
            OrderEvent::OrderCancelled { reason: Some("late".into()) }.into(),
            "OrderCancelled",
            1,
            json!({"reason": "late"}),
        ),
        (
            OrderEvent::OrderCancelled { reason: None }.into(),
            "OrderCancelled",
            1,
            json!({"reason": null}),
        ),
        (
            CustomerEvent::PersonalDataErased {
                customer_id: customer("alice"),
            }
            .into(),
            "PersonalDataErased",
            1,
            json!({"customer_id": "alice"}),
        ),
    ]
}

#[test]
fn every_event_type_has_a_golden_example() {
    let covered: Vec<&str> = golden().iter().map(|(_, name, _, _)| *name).collect();
    let all = CartEvent::TYPES
        .iter()
        .chain(ProductEvent::TYPES)
        .chain(OrderEvent::TYPES)
        .chain(CustomerEvent::TYPES);
    for t in all {
        assert!(covered.contains(&t.name), "{} has no golden example", t.name);
    }
}

#[test]
fn events_encode_to_the_pinned_type_version_and_data() {
    for (event, name, version, data) in golden() {
        assert_eq!(event.event_type(), name);
        assert_eq!(event.schema_version(), version, "{name}");
        // `to_data` parses `to_json`, the text the store writes.
        assert_eq!(event.to_data(), data, "{name}");
        assert_eq!(AnyEvent::current_schema_version(name), Some(version));
    }
}

#[test]
fn events_decode_from_the_pinned_data() {
    for (event, name, _, data) in golden() {
        // From the JSON text (what the store reads), and from a `Value` (what upcasters give).
        let from_value = match &event {
            AnyEvent::Cart(_) => CartEvent::from_data(name, data.clone()).map(AnyEvent::Cart),
            AnyEvent::Product(_) => ProductEvent::from_data(name, data.clone()).map(AnyEvent::Product),
            AnyEvent::Order(_) => OrderEvent::from_data(name, data.clone()).map(AnyEvent::Order),
            AnyEvent::Customer(_) => CustomerEvent::from_data(name, data.clone()).map(AnyEvent::Customer),
        };
        assert_eq!(from_value.unwrap(), event, "{name}");
        assert_eq!(AnyEvent::from_data(name, data).unwrap(), event, "{name}");
    }
}

#[test]
fn the_serde_tag_is_the_declared_type_name() {
    for (event, name, _, _) in golden() {
        let tagged = match &event {
            AnyEvent::Cart(e) => serde_json::to_value(e),
            AnyEvent::Product(e) => serde_json::to_value(e),
            AnyEvent::Order(e) => serde_json::to_value(e),
            AnyEvent::Customer(e) => serde_json::to_value(e),
        }
        .unwrap();
        assert_eq!(tagged["type"], name);
    }
}

#[test]
fn type_names_are_unique_across_aggregates() {
    let mut names: Vec<&str> = CartEvent::TYPES
        .iter()
        .chain(ProductEvent::TYPES)
        .chain(OrderEvent::TYPES)
        .chain(CustomerEvent::TYPES)
        .map(|t| t.name)
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count);
}

#[test]
fn events_know_their_category() {
    for (event, _, _, _) in golden() {
        let expected = match event {
            AnyEvent::Cart(_) => "cart",
            AnyEvent::Product(_) => "product",
            AnyEvent::Order(_) => "order",
            AnyEvent::Customer(_) => "customer",
        };
        assert_eq!(event.category(), expected);
    }
}

#[test]
fn an_unknown_type_is_reported_as_such() {
    assert!(matches!(
        AnyEvent::from_data("CartExploded", json!({})),
        Err(DecodeError::UnknownEventType(t)) if t == "CartExploded"
    ));
    // A type of another aggregate is unknown to this one.
    assert!(matches!(
        CartEvent::from_data("OrderShipped", json!({})),
        Err(DecodeError::UnknownEventType(_))
    ));
}

#[test]
fn the_seed_shape_of_item_added_is_not_the_current_schema() {
    // Version 1, from the seed article: the store must upcast it first.
    let v1 = json!({"item_id": "tea", "quantity": 2});
    let err = CartEvent::from_data("ItemAddedToCart", v1).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidData { ref event_type, .. } if event_type == "ItemAddedToCart"));
}

#[test]
fn data_that_breaks_an_invariant_of_a_field_is_rejected() {
    for data in [
        json!({"sku": "not a sku", "quantity": 1}),
        json!({"sku": "tea", "quantity": -1}),
        json!({"sku": "tea", "quantity": 1.5}),
        json!({"sku": "tea"}),
    ] {
        assert!(CartEvent::from_data("ItemQuantityChanged", data.clone()).is_err(), "{data}");
    }
}

#[test]
fn unknown_fields_are_ignored_so_that_adding_an_optional_field_stays_readable() {
    let data = json!({"sku": "tea", "quantity": 1, "added_later": true});
    assert_eq!(
        CartEvent::from_data("ItemQuantityChanged", data).unwrap(),
        CartEvent::ItemQuantityChanged {
            sku: sku("tea"),
            quantity: 1
        }
    );
}

#[test]
fn json_text_decodes_whatever_its_spacing_and_key_order() {
    let text = r#" { "quantity" : 2 ,"sku":"tea" } "#;
    assert_eq!(
        CartEvent::from_json("ItemQuantityChanged", text).unwrap(),
        CartEvent::ItemQuantityChanged {
            sku: sku("tea"),
            quantity: 2
        }
    );
    // Only a declared type name is ever written into the tagged text.
    assert!(matches!(
        CartEvent::from_json(r#"ItemQuantityChanged","x":"#, text),
        Err(DecodeError::UnknownEventType(_))
    ));
}

#[test]
fn json_text_is_one_value_or_an_error() {
    for text in [
        // A second value after the data, or text that would close the tagged object and add
        // a key of its own if the two were ever written out together.
        r#"{"sku":"tea","quantity":2} {"sku":"tea"}"#,
        r#"{"sku":"tea","quantity":2}, "type": "CartCleared""#,
        r#"{"sku":"tea","quantity":2"#,
        r#"{"sku":"tea","quantity":-2}"#,
        "",
    ] {
        assert!(
            matches!(CartEvent::from_json("ItemQuantityChanged", text), Err(DecodeError::InvalidData { .. })),
            "{text:?} decoded"
        );
    }
    assert!(matches!(
        AnyEvent::from_json("ItemQuantityChanged", r#"{"sku":"tea","quantity":2}}"#),
        Err(DecodeError::InvalidData { .. })
    ));
}

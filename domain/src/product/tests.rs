//! Given events, when a command, then events or an error.

use super::*;
use crate::testing::{cents, given, order_id, sku};

fn registered() -> ProductEvent {
    ProductEvent::ProductRegistered {
        sku: sku("tea"),
        name: "Green tea".into(),
        price: cents(450),
    }
}

fn received(quantity: u32) -> ProductEvent {
    ProductEvent::StockReceived { quantity }
}

fn reserved(order: u128, quantity: u32) -> ProductEvent {
    ProductEvent::StockReserved {
        order_id: order_id(order),
        quantity,
    }
}

fn register(name: &str, price: i64, initial_stock: i64) -> ProductCommand {
    ProductCommand::Register {
        sku: sku("tea"),
        name: name.into(),
        price: cents(price),
        initial_stock,
    }
}

fn reserve(order: u128, quantity: u32) -> ProductCommand {
    ProductCommand::Reserve {
        order_id: order_id(order),
        quantity,
    }
}

fn no_events() -> Vec<ProductEvent> {
    vec![]
}

// ---------------------------------------------------------------- register

#[test]
fn register_without_stock_appends_only_the_registration() {
    let product = given(no_events()).when(register("Green tea", 450, 0)).then([registered()]).unwrap();
    assert_eq!(product.sku, sku("tea"));
    assert_eq!(product.price, cents(450));
    assert_eq!((product.on_hand, product.available()), (0, 0));
}

#[test]
fn register_with_initial_stock_also_receives_it() {
    let product = given(no_events())
        .when(register("Green tea", 450, 20))
        .then([registered(), received(20)])
        .unwrap();
    assert_eq!(product.available(), 20);
}

#[test]
fn register_trims_the_name() {
    given(no_events()).when(register("  Green tea\n", 450, 0)).then([registered()]);
}

#[test]
fn register_rejects_an_empty_or_overlong_name() {
    for name in ["", "   ", &"x".repeat(201)] {
        given(no_events()).when(register(name, 450, 0)).then_code("BAD_USER_INPUT");
    }
    // 200 characters, not bytes.
    given(no_events())
        .when(register(&"é".repeat(200), 450, 0))
        .then([ProductEvent::ProductRegistered {
            sku: sku("tea"),
            name: "é".repeat(200),
            price: cents(450),
        }]);
}

#[test]
fn register_rejects_a_price_of_zero_or_less() {
    given(no_events())
        .when(register("Green tea", 0, 0))
        .then_error(DomainError::BadUserInput("price must be greater than 0 (got 0.00)".into()));
    given(no_events()).when(register("Green tea", -1, 0)).then_code("BAD_USER_INPUT");
}

#[test]
fn register_rejects_negative_or_huge_initial_stock() {
    given(no_events()).when(register("Green tea", 450, -1)).then_code("BAD_USER_INPUT");
    given(no_events())
        .when(register("Green tea", 450, i64::from(MAX_ON_HAND) + 1))
        .then_code("BAD_USER_INPUT");
}

#[test]
fn register_twice_is_rejected() {
    given([registered()])
        .when(register("Green tea", 450, 0))
        .then_error(DomainError::BadUserInput("product tea is already registered".into()));
}

#[test]
fn every_other_command_on_a_missing_product_is_not_found() {
    for command in [
        ProductCommand::ChangePrice { price: cents(100) },
        ProductCommand::ReceiveStock { quantity: 1 },
        reserve(1, 1),
        ProductCommand::Release { order_id: order_id(1) },
        ProductCommand::Ship { order_id: order_id(1) },
    ] {
        given(no_events()).when(command).then_error(DomainError::NotFound("product".into()));
    }
}

// ---------------------------------------------------------------- price

#[test]
fn change_price_appends_the_new_price() {
    let product = given([registered()])
        .when(ProductCommand::ChangePrice { price: cents(500) })
        .then([ProductEvent::ProductPriceChanged { price: cents(500) }])
        .unwrap();
    assert_eq!(product.price, cents(500));
}

#[test]
fn change_price_to_the_current_price_appends_nothing() {
    given([registered()])
        .when(ProductCommand::ChangePrice { price: cents(450) })
        .then_nothing();
}

#[test]
fn change_price_rejects_a_price_of_zero() {
    given([registered()])
        .when(ProductCommand::ChangePrice { price: cents(0) })
        .then_code("BAD_USER_INPUT");
}

// ---------------------------------------------------------------- receive

#[test]
fn receive_adds_to_on_hand() {
    let product = given([registered(), received(5)])
        .when(ProductCommand::ReceiveStock { quantity: 7 })
        .then([received(7)])
        .unwrap();
    assert_eq!(product.on_hand, 12);
}

#[test]
fn receive_needs_at_least_one_unit() {
    for quantity in [0, -1] {
        given([registered()])
            .when(ProductCommand::ReceiveStock { quantity })
            .then_error(DomainError::BadUserInput(format!("stock quantity must be at least 1 (got {quantity})")));
    }
}

#[test]
fn receive_beyond_the_on_hand_limit_is_rejected() {
    given([registered(), received(MAX_ON_HAND - 1)])
        .when(ProductCommand::ReceiveStock { quantity: 2 })
        .then_code("BAD_USER_INPUT");
    given([registered(), received(MAX_ON_HAND - 1)])
        .when(ProductCommand::ReceiveStock { quantity: 1 })
        .then([received(1)]);
}

// ---------------------------------------------------------------- reserve

#[test]
fn reserve_holds_units_for_the_order() {
    let product = given([registered(), received(10)]).when(reserve(1, 4)).then([reserved(1, 4)]).unwrap();
    assert_eq!(product.on_hand, 10);
    assert_eq!(product.reserved_for(&order_id(1)), 4);
    assert_eq!(product.available(), 6);
}

#[test]
fn reserve_may_take_every_available_unit() {
    let product = given([registered(), received(10), reserved(1, 4)])
        .when(reserve(2, 6))
        .then([reserved(2, 6)])
        .unwrap();
    assert_eq!(product.available(), 0);
}

#[test]
fn reserve_beyond_available_is_out_of_stock() {
    given([registered(), received(10), reserved(1, 4)])
        .when(reserve(2, 7))
        .then_error(DomainError::OutOfStock {
            sku: sku("tea"),
            requested: 7,
            available: 6,
        });
}

#[test]
fn reserve_of_zero_units_is_rejected() {
    given([registered(), received(10)]).when(reserve(1, 0)).then_code("BAD_USER_INPUT");
}

// ---------------------------------------------------------------- release

#[test]
fn release_gives_back_exactly_what_the_order_held() {
    let product = given([registered(), received(10), reserved(1, 4), reserved(2, 3)])
        .when(ProductCommand::Release { order_id: order_id(1) })
        .then([ProductEvent::StockReleased {
            order_id: order_id(1),
            quantity: 4,
        }])
        .unwrap();
    assert_eq!(product.on_hand, 10);
    assert_eq!(product.reserved_for(&order_id(1)), 0);
    assert_eq!(product.reserved_for(&order_id(2)), 3);
    assert_eq!(product.available(), 7);
}

#[test]
fn release_of_an_order_holding_nothing_appends_nothing() {
    given([registered(), received(10)])
        .when(ProductCommand::Release { order_id: order_id(1) })
        .then_nothing();
    given([
        registered(),
        received(10),
        reserved(1, 4),
        ProductEvent::StockReleased {
            order_id: order_id(1),
            quantity: 4,
        },
    ])
    .when(ProductCommand::Release { order_id: order_id(1) })
    .then_nothing();
}

// ---------------------------------------------------------------- ship

#[test]
fn ship_takes_the_order_units_out_of_stock() {
    let product = given([registered(), received(10), reserved(1, 4), reserved(2, 3)])
        .when(ProductCommand::Ship { order_id: order_id(1) })
        .then([ProductEvent::StockShipped {
            order_id: order_id(1),
            quantity: 4,
        }])
        .unwrap();
    assert_eq!(product.on_hand, 6);
    assert_eq!(product.reserved_for(&order_id(1)), 0);
    assert_eq!(product.available(), 3);
}

#[test]
fn ship_of_an_order_holding_nothing_appends_nothing() {
    given([registered(), received(10)])
        .when(ProductCommand::Ship { order_id: order_id(1) })
        .then_nothing();
    given([
        registered(),
        received(10),
        reserved(1, 4),
        ProductEvent::StockShipped {
            order_id: order_id(1),
            quantity: 4,
        },
    ])
    .when(ProductCommand::Ship { order_id: order_id(1) })
    .then_nothing();
}

#[test]
fn a_released_order_cannot_ship_its_old_units() {
    given([
        registered(),
        received(10),
        reserved(1, 4),
        ProductEvent::StockReleased {
            order_id: order_id(1),
            quantity: 4,
        },
    ])
    .when(ProductCommand::Ship { order_id: order_id(1) })
    .then_nothing();
}

// ---------------------------------------------------------------- state

#[test]
fn an_empty_stream_is_no_product() {
    assert_eq!(fold(&[]), None);
    assert_eq!(ProductState::default(), None);
    assert_eq!(fold(&[received(3)]), None);
}

#[test]
fn the_state_survives_a_snapshot() {
    let product = fold(&[registered(), received(10), reserved(1, 4), reserved(2, 3)]);
    let json = serde_json::to_value(&product).unwrap();
    assert_eq!(json["reserved"][order_id(1).to_string()], 4);
    assert_eq!(serde_json::from_value::<ProductState>(json).unwrap(), product);
}

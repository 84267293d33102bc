//! Given events, when a command, then events or an error.

use super::*;
use crate::testing::{cart_id, cents, customer, given, order_id, sku};

fn created() -> CartEvent {
    CartEvent::CartCreated {
        cart_id: cart_id(1),
        customer_id: customer("alice"),
    }
}

fn added(s: &str, quantity: u32, price: i64) -> CartEvent {
    CartEvent::ItemAddedToCart {
        sku: sku(s),
        name: format!("{s} name"),
        quantity,
        unit_price: cents(price),
    }
}

fn add(s: &str, quantity: i64, price: i64) -> CartCommand {
    CartCommand::AddItem {
        sku: sku(s),
        quantity,
        name: format!("{s} name"),
        unit_price: cents(price),
    }
}

fn change(s: &str, quantity: i64) -> CartCommand {
    CartCommand::ChangeQuantity { sku: sku(s), quantity }
}

fn remove(s: &str) -> CartCommand {
    CartCommand::Remove { sku: sku(s) }
}

fn checked_out() -> CartEvent {
    CartEvent::CartCheckedOut { order_id: order_id(9) }
}

fn no_events() -> Vec<CartEvent> {
    vec![]
}

// ---------------------------------------------------------------- create

#[test]
fn create_starts_an_open_empty_cart() {
    let state = given(no_events())
        .when(CartCommand::Create {
            cart_id: cart_id(1),
            customer_id: customer("alice"),
        })
        .then([created()]);
    let cart = state.unwrap();
    assert_eq!(cart.id, cart_id(1));
    assert_eq!(cart.customer_id, customer("alice"));
    assert_eq!(cart.status, CartStatus::Open);
    assert!(cart.lines.is_empty());
    assert_eq!(cart.order_id, None);
    assert_eq!(cart.item_count(), 0);
    assert_eq!(cart.subtotal(), Money::ZERO);
}

#[test]
fn create_on_an_existing_cart_is_rejected() {
    given([created()])
        .when(CartCommand::Create {
            cart_id: cart_id(1),
            customer_id: customer("alice"),
        })
        .then_error(DomainError::BadUserInput("cart already exists".into()));
}

#[test]
fn create_on_a_checked_out_cart_is_rejected() {
    given([created(), added("tea", 1, 100), checked_out()])
        .when(CartCommand::Create {
            cart_id: cart_id(1),
            customer_id: customer("bob"),
        })
        .then_code("BAD_USER_INPUT");
}

// ---------------------------------------------------------------- missing cart

#[test]
fn every_other_command_on_a_missing_cart_is_not_found() {
    for command in [add("tea", 1, 100), change("tea", 2), remove("tea"), CartCommand::Clear] {
        given(no_events()).when(command).then_error(DomainError::NotFound("cart".into()));
    }
}

// ---------------------------------------------------------------- add

#[test]
fn add_appends_the_line_with_the_catalog_name_and_price() {
    let cart = given([created()]).when(add("tea", 2, 450)).then([added("tea", 2, 450)]).unwrap();
    assert_eq!(
        cart.lines,
        vec![Line {
            sku: sku("tea"),
            name: "tea name".into(),
            quantity: 2,
            unit_price: cents(450),
        }]
    );
    assert_eq!(cart.lines[0].line_total(), cents(900));
}

#[test]
fn add_accepts_quantities_1_and_999() {
    given([created()]).when(add("tea", 1, 100)).then([added("tea", 1, 100)]);
    given([created()]).when(add("tea", 999, 100)).then([added("tea", 999, 100)]);
}

#[test]
fn add_rejects_quantities_outside_1_to_999() {
    for quantity in [0, -1, 1000, i64::MIN, i64::MAX, i64::from(u32::MAX) + 1] {
        given([created()])
            .when(add("tea", quantity, 100))
            .then_error(DomainError::BadUserInput(format!("quantity must be between 1 and 999 (got {quantity})")));
    }
}

#[test]
fn add_rejects_a_price_that_is_not_positive() {
    given([created()]).when(add("tea", 1, 0)).then_code("BAD_USER_INPUT");
    given([created()]).when(add("tea", 1, -100)).then_code("BAD_USER_INPUT");
    given([created()])
        .when(CartCommand::AddItem {
            sku: sku("tea"),
            quantity: 1,
            name: "tea".into(),
            unit_price: Money::from_minor(Money::MAX_PRICE.minor_units() + 1),
        })
        .then_code("BAD_USER_INPUT");
}

#[test]
fn adding_a_sku_already_in_the_cart_adds_to_its_quantity_at_the_first_price() {
    // The catalog price went from 4.50 to 5.00 between the two adds; the
    // event records the price the line actually keeps.
    let cart = given([created(), added("tea", 2, 450)])
        .when(CartCommand::AddItem {
            sku: sku("tea"),
            quantity: 3,
            name: "Tea, renamed".into(),
            unit_price: cents(500),
        })
        .then([added("tea", 3, 450)])
        .unwrap();
    assert_eq!(cart.lines.len(), 1);
    assert_eq!(cart.lines[0].quantity, 5);
    assert_eq!(cart.lines[0].unit_price, cents(450));
    assert_eq!(cart.lines[0].name, "tea name");
}

#[test]
fn a_line_may_reach_exactly_999() {
    given([created(), added("tea", 990, 100)])
        .when(add("tea", 9, 100))
        .then([added("tea", 9, 100)]);
}

#[test]
fn a_line_never_goes_above_999() {
    given([created(), added("tea", 990, 100)])
        .when(add("tea", 10, 100))
        .then_error(DomainError::BadUserInput(
            "a cart holds at most 999 units of tea: it has 990, adding 10 would make 1000".into(),
        ));
}

fn cart_with_lines(n: usize) -> Vec<CartEvent> {
    let mut events = vec![created()];
    events.extend((0..n).map(|i| added(&format!("sku-{i}"), 1, 100)));
    events
}

#[test]
fn the_100th_distinct_line_is_accepted() {
    given(cart_with_lines(99)).when(add("one-more", 1, 100)).then([added("one-more", 1, 100)]);
}

#[test]
fn a_101st_distinct_line_is_rejected() {
    given(cart_with_lines(100))
        .when(add("one-more", 1, 100))
        .then_error(DomainError::BadUserInput(
            "a cart holds at most 100 different items; remove one first".into(),
        ));
}

#[test]
fn a_full_cart_still_accepts_more_of_a_sku_it_holds() {
    given(cart_with_lines(100)).when(add("sku-7", 1, 100)).then([added("sku-7", 1, 100)]);
}

#[test]
fn a_full_cart_accepts_a_new_line_after_a_removal() {
    let mut events = cart_with_lines(100);
    events.push(CartEvent::ItemRemovedFromCart { sku: sku("sku-0") });
    given(events).when(add("one-more", 1, 100)).then([added("one-more", 1, 100)]);
}

// ---------------------------------------------------------------- change quantity

#[test]
fn change_sets_the_new_quantity() {
    let cart = given([created(), added("tea", 2, 450)])
        .when(change("tea", 7))
        .then([CartEvent::ItemQuantityChanged {
            sku: sku("tea"),
            quantity: 7,
        }])
        .unwrap();
    assert_eq!(cart.lines[0].quantity, 7);
    assert_eq!(cart.lines[0].unit_price, cents(450));
}

#[test]
fn change_to_the_same_quantity_appends_nothing() {
    given([created(), added("tea", 2, 450)]).when(change("tea", 2)).then_nothing();
}

#[test]
fn change_of_an_absent_sku_is_item_not_in_cart() {
    given([created(), added("tea", 2, 450)])
        .when(change("coffee", 1))
        .then_error(DomainError::ItemNotInCart { sku: sku("coffee") });
}

#[test]
fn change_of_a_removed_sku_is_item_not_in_cart() {
    given([created(), added("tea", 2, 450), CartEvent::ItemRemovedFromCart { sku: sku("tea") }])
        .when(change("tea", 1))
        .then_error(DomainError::ItemNotInCart { sku: sku("tea") });
}

#[test]
fn change_rejects_quantities_outside_1_to_999() {
    for quantity in [0, -3, 1000] {
        given([created(), added("tea", 2, 450)])
            .when(change("tea", quantity))
            .then_code("BAD_USER_INPUT");
    }
    given([created(), added("tea", 2, 450)])
        .when(change("tea", 999))
        .then([CartEvent::ItemQuantityChanged {
            sku: sku("tea"),
            quantity: 999,
        }]);
}

// ---------------------------------------------------------------- remove

#[test]
fn remove_drops_the_line_and_keeps_the_others_in_order() {
    let cart = given([created(), added("a", 1, 100), added("b", 2, 200), added("c", 3, 300)])
        .when(remove("b"))
        .then([CartEvent::ItemRemovedFromCart { sku: sku("b") }])
        .unwrap();
    let skus: Vec<&str> = cart.lines.iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(skus, ["a", "c"]);
}

#[test]
fn remove_of_an_absent_sku_is_item_not_in_cart() {
    given([created()])
        .when(remove("tea"))
        .then_error(DomainError::ItemNotInCart { sku: sku("tea") });
}

#[test]
fn a_removed_sku_added_again_gets_the_new_price_at_the_end() {
    let cart = given([
        created(),
        added("a", 1, 100),
        added("b", 1, 100),
        CartEvent::ItemRemovedFromCart { sku: sku("a") },
    ])
    .when(add("a", 4, 150))
    .then([added("a", 4, 150)])
    .unwrap();
    let lines: Vec<(&str, u32, Money)> = cart.lines.iter().map(|l| (l.sku.as_str(), l.quantity, l.unit_price)).collect();
    assert_eq!(lines, [("b", 1, cents(100)), ("a", 4, cents(150))]);
}

// ---------------------------------------------------------------- clear

#[test]
fn clear_empties_the_cart() {
    let cart = given([created(), added("a", 1, 100), added("b", 2, 200)])
        .when(CartCommand::Clear)
        .then([CartEvent::CartCleared {}])
        .unwrap();
    assert!(cart.lines.is_empty());
    assert_eq!(cart.status, CartStatus::Open);
}

#[test]
fn clearing_an_empty_cart_appends_nothing() {
    given([created()]).when(CartCommand::Clear).then_nothing();
    given([created(), added("a", 1, 100), CartEvent::CartCleared {}])
        .when(CartCommand::Clear)
        .then_nothing();
}

// ---------------------------------------------------------------- checked out

#[test]
fn a_checked_out_cart_changes_no_more() {
    let history = [created(), added("tea", 2, 450), checked_out()];
    for command in [
        add("tea", 1, 450),
        add("coffee", 1, 450),
        change("tea", 3),
        change("coffee", 3),
        remove("tea"),
        CartCommand::Clear,
    ] {
        given(history.clone()).when(command).then_error(DomainError::CartNotOpen);
    }
}

#[test]
fn checkout_records_the_order_and_keeps_the_lines() {
    let cart = fold(&[created(), added("tea", 2, 450), checked_out()]).unwrap();
    assert_eq!(cart.status, CartStatus::CheckedOut);
    assert_eq!(cart.order_id, Some(order_id(9)));
    assert_eq!(cart.lines.len(), 1);
}

// ---------------------------------------------------------------- state

#[test]
fn item_count_and_subtotal_sum_the_lines() {
    let cart = fold(&[created(), added("a", 2, 450), added("b", 3, 199), added("a", 1, 450)]).unwrap();
    assert_eq!(cart.item_count(), 6);
    assert_eq!(cart.subtotal(), cents(3 * 450 + 3 * 199));
}

#[test]
fn the_largest_possible_cart_has_an_exact_subtotal() {
    let mut events = vec![created()];
    events.extend((0..MAX_LINES).map(|i| CartEvent::ItemAddedToCart {
        sku: sku(&format!("s{i}")),
        name: "n".into(),
        quantity: MAX_LINE_QUANTITY,
        unit_price: Money::MAX_PRICE,
    }));
    let cart = fold(&events).unwrap();
    assert_eq!(cart.item_count(), 99_900);
    assert_eq!(cart.subtotal(), cents(Money::MAX_PRICE.minor_units() * 99_900));
}

#[test]
fn an_empty_stream_is_no_cart() {
    assert_eq!(fold(&[]), None);
    assert_eq!(CartState::default(), None);
    // Events before CartCreated never happen; evolve ignores them.
    assert_eq!(fold(&[added("a", 1, 100)]), None);
}

#[test]
fn the_state_survives_a_snapshot() {
    let cart = fold(&[created(), added("a", 2, 450), checked_out()]);
    let json = serde_json::to_value(&cart).unwrap();
    assert_eq!(json["status"], "CHECKED_OUT");
    assert_eq!(json["lines"][0]["unit_price"], 450);
    assert_eq!(serde_json::from_value::<CartState>(json).unwrap(), cart);
    let none: CartState = None;
    assert_eq!(serde_json::from_value::<CartState>(serde_json::to_value(&none).unwrap()).unwrap(), None);
}

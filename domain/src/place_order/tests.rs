//! Given a cart and products, when placing the order, then the events of
//! every stream or an error.

use super::*;
use crate::cart::{self, CartState};
use crate::order::{self, OrderCommand};
use crate::product::ProductState;
use crate::testing::{cart_id, cents, customer, order_id, sku};

fn cart_with(lines: &[(&str, u32, i64)]) -> CartState {
    let mut events = vec![CartEvent::CartCreated {
        cart_id: cart_id(1),
        customer_id: customer("alice"),
    }];
    events.extend(lines.iter().map(|(s, quantity, price)| CartEvent::ItemAddedToCart {
        sku: sku(s),
        name: format!("{s} name"),
        quantity: *quantity,
        unit_price: cents(*price),
    }));
    cart::fold(&events)
}

/// Products with the given units available; catalog price 999 (different
/// from every cart price, to show the cart's price wins).
fn products(stock: &[(&str, u32)]) -> BTreeMap<Sku, Product> {
    stock
        .iter()
        .map(|(s, available)| {
            let product = product::fold(&[
                ProductEvent::ProductRegistered {
                    sku: sku(s),
                    name: format!("{s} name"),
                    price: cents(999),
                },
                ProductEvent::StockReceived { quantity: available + 5 },
                ProductEvent::StockReserved {
                    order_id: order_id(77),
                    quantity: 5,
                },
            ])
            .expect("registered");
            (sku(s), product)
        })
        .collect()
}

#[test]
fn placing_checks_out_the_cart_reserves_each_line_and_places_the_order() {
    let cart = cart_with(&[("tea", 2, 450), ("cup", 1, 1200)]);
    let placed = decide_place_order(&cart, &products(&[("tea", 10), ("cup", 1)]), order_id(1), None).unwrap();

    assert_eq!(
        placed,
        PlaceOrderEvents {
            cart_events: vec![CartEvent::CartCheckedOut { order_id: order_id(1) }],
            product_events: vec![
                (
                    sku("tea"),
                    vec![ProductEvent::StockReserved {
                        order_id: order_id(1),
                        quantity: 2
                    }]
                ),
                (
                    sku("cup"),
                    vec![ProductEvent::StockReserved {
                        order_id: order_id(1),
                        quantity: 1
                    }]
                ),
            ],
            order_events: vec![OrderEvent::OrderPlaced {
                order_id: order_id(1),
                cart_id: cart_id(1),
                customer_id: customer("alice"),
                lines: vec![
                    Line {
                        sku: sku("tea"),
                        name: "tea name".into(),
                        quantity: 2,
                        unit_price: cents(450),
                    },
                    Line {
                        sku: sku("cup"),
                        name: "cup name".into(),
                        quantity: 1,
                        unit_price: cents(1200),
                    },
                ],
                total: cents(2100),
                personal_data: None,
            }],
        }
    );
}

#[test]
fn the_order_total_is_the_cart_subtotal() {
    let cart = cart_with(&[("tea", 3, 333), ("cup", 7, 1201)]);
    let placed = decide_place_order(&cart, &products(&[("tea", 3), ("cup", 7)]), order_id(1), None).unwrap();
    let order = order::fold(&placed.order_events).unwrap();
    assert_eq!(order.total, cart.unwrap().subtotal());
}

#[test]
fn placing_without_a_cart_is_not_found() {
    assert_eq!(
        decide_place_order(&None, &products(&[]), order_id(1), None),
        Err(DomainError::NotFound("cart".into()))
    );
}

#[test]
fn placing_a_checked_out_cart_is_cart_not_open() {
    let cart = cart::evolve(cart_with(&[("tea", 1, 450)]), &CartEvent::CartCheckedOut { order_id: order_id(5) });
    assert_eq!(
        decide_place_order(&cart, &products(&[("tea", 10)]), order_id(1), None),
        Err(DomainError::CartNotOpen)
    );
}

#[test]
fn placing_an_empty_cart_is_empty_cart() {
    assert_eq!(
        decide_place_order(&cart_with(&[]), &products(&[]), order_id(1), None),
        Err(DomainError::EmptyCart)
    );
}

#[test]
fn a_line_lacking_stock_rejects_the_whole_order() {
    let cart = cart_with(&[("tea", 2, 450), ("cup", 4, 1200), ("pot", 9, 3000)]);
    assert_eq!(
        decide_place_order(&cart, &products(&[("tea", 10), ("cup", 3), ("pot", 1)]), order_id(1), None),
        Err(DomainError::OutOfStock {
            sku: sku("cup"),
            requested: 4,
            available: 3,
        }),
        "the first line in cart order that lacks stock is reported"
    );
}

#[test]
fn exactly_the_available_stock_is_enough() {
    let cart = cart_with(&[("tea", 10, 450)]);
    assert!(decide_place_order(&cart, &products(&[("tea", 10)]), order_id(1), None).is_ok());
}

#[test]
fn a_line_without_a_product_is_not_found() {
    let cart = cart_with(&[("tea", 2, 450), ("gone", 1, 100)]);
    assert_eq!(
        decide_place_order(&cart, &products(&[("tea", 10)]), order_id(1), None),
        Err(DomainError::NotFound("product gone".into()))
    );
}

#[test]
fn missing_products_and_missing_stock_are_reported_in_line_order() {
    let cart = cart_with(&[("tea", 20, 450), ("gone", 1, 100)]);
    assert_eq!(
        decide_place_order(&cart, &products(&[("tea", 10)]), order_id(1), None)
            .unwrap_err()
            .code(),
        "OUT_OF_STOCK"
    );
}

// ---------------------------------------------------------------- inventory follow-up

/// The order placed from tea x2 and cup x1, after these commands.
fn order_after(commands: &[OrderCommand]) -> Order {
    let cart = cart_with(&[("tea", 2, 450), ("cup", 1, 1200)]);
    let placed = decide_place_order(&cart, &products(&[("tea", 5), ("cup", 5)]), order_id(1), None).unwrap();
    let mut state = order::fold(&placed.order_events);
    for command in commands {
        for event in order::decide(&state, command.clone()).unwrap() {
            state = order::evolve(state, &event);
        }
    }
    state.unwrap()
}

#[test]
fn a_cancelled_order_releases_every_line() {
    for commands in [
        vec![OrderCommand::Cancel { reason: None }],
        vec![OrderCommand::StartPreparation, OrderCommand::Cancel { reason: None }],
    ] {
        let release = ProductCommand::Release { order_id: order_id(1) };
        assert_eq!(
            decide_inventory_commands(&order_after(&commands)),
            vec![(sku("tea"), release.clone()), (sku("cup"), release)]
        );
    }
}

#[test]
fn a_shipped_order_ships_every_line() {
    let order = order_after(&[OrderCommand::StartPreparation, OrderCommand::Ship]);
    let ship = ProductCommand::Ship { order_id: order_id(1) };
    assert_eq!(decide_inventory_commands(&order), vec![(sku("tea"), ship.clone()), (sku("cup"), ship)]);
}

#[test]
fn an_open_order_leaves_stock_alone() {
    assert_eq!(decide_inventory_commands(&order_after(&[])), vec![]);
    assert_eq!(decide_inventory_commands(&order_after(&[OrderCommand::StartPreparation])), vec![]);
}

#[test]
fn place_then_cancel_gives_every_unit_back_once() {
    let cart = cart_with(&[("tea", 2, 450)]);
    let mut stock: ProductState = products(&[("tea", 5)]).remove(&sku("tea"));
    let before = stock.clone().unwrap().available();

    let placed = decide_place_order(&cart, &[(sku("tea"), stock.clone().unwrap())].into(), order_id(1), None).unwrap();
    for event in &placed.product_events[0].1 {
        stock = product::evolve(stock, event);
    }
    assert_eq!(stock.as_ref().unwrap().available(), before - 2);

    let order = order_after(&[OrderCommand::Cancel { reason: None }]);
    let commands = decide_inventory_commands(&order);
    // The reactor may see OrderCancelled twice; the second pass appends nothing.
    for pass in 0..2 {
        for (s, command) in commands.iter().filter(|(s, _)| s == &sku("tea")) {
            assert_eq!(s, &sku("tea"));
            let events = product::decide(&stock, command.clone()).unwrap();
            assert_eq!(events.len(), if pass == 0 { 1 } else { 0 });
            for event in &events {
                stock = product::evolve(stock, event);
            }
        }
    }
    assert_eq!(stock.unwrap().available(), before);
}

#[test]
fn the_order_carries_the_sealed_personal_data_it_was_given() {
    let cart = cart_with(&[("tea", 1, 450)]);
    let sealed = crate::personal::SealedPersonalData::new("v1.k.n.c".into());
    let placed = decide_place_order(&cart, &products(&[("tea", 10)]), order_id(1), Some(sealed.clone())).unwrap();
    let order = crate::order::fold(&placed.order_events).unwrap();
    assert_eq!(order.personal_data, Some(sealed));
}

//! Given events, when a command, then events or an error.

use super::*;
use crate::testing::{cart_id, cents, customer, given, order_id, sku};

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced {
        order_id: order_id(1),
        cart_id: cart_id(1),
        customer_id: customer("alice"),
        lines: vec![
            Line {
                sku: sku("tea"),
                name: "Green tea".into(),
                quantity: 2,
                unit_price: cents(450),
            },
            Line {
                sku: sku("cup"),
                name: "Cup".into(),
                quantity: 1,
                unit_price: cents(1200),
            },
        ],
        total: cents(2100),
        personal_data: None,
    }
}

fn preparing() -> OrderEvent {
    OrderEvent::OrderPreparationStarted {}
}

fn shipped() -> OrderEvent {
    OrderEvent::OrderShipped {}
}

fn cancelled() -> OrderEvent {
    OrderEvent::OrderCancelled { reason: None }
}

fn cancel(reason: Option<&str>) -> OrderCommand {
    OrderCommand::Cancel {
        reason: reason.map(str::to_owned),
    }
}

fn invalid(from: OrderStatus, action: OrderAction) -> DomainError {
    DomainError::InvalidOrderState { from, action }
}

#[test]
fn a_placed_order_holds_its_lines_and_total() {
    let order = fold(&[placed()]).unwrap();
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.cart_id, cart_id(1));
    assert_eq!(order.customer_id, customer("alice"));
    assert_eq!(order.lines[0].line_total(), cents(900));
    assert_eq!(order.total, cents(2100));
}

#[test]
fn every_command_on_a_missing_order_is_not_found() {
    for command in [OrderCommand::StartPreparation, OrderCommand::Ship, cancel(None)] {
        given(Vec::<OrderEvent>::new())
            .when(command)
            .then_error(DomainError::NotFound("order".into()));
    }
}

// ---------------------------------------------------------------- allowed moves

#[test]
fn placed_to_preparing() {
    let order = given([placed()]).when(OrderCommand::StartPreparation).then([preparing()]);
    assert_eq!(order.unwrap().status, OrderStatus::Preparing);
}

#[test]
fn preparing_to_shipped() {
    let order = given([placed(), preparing()]).when(OrderCommand::Ship).then([shipped()]);
    assert_eq!(order.unwrap().status, OrderStatus::Shipped);
}

#[test]
fn placed_to_cancelled() {
    let order = given([placed()])
        .when(cancel(Some("changed my mind")))
        .then([OrderEvent::OrderCancelled {
            reason: Some("changed my mind".into()),
        }])
        .unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.cancel_reason.as_deref(), Some("changed my mind"));
}

#[test]
fn preparing_to_cancelled() {
    given([placed(), preparing()]).when(cancel(None)).then([cancelled()]);
}

#[test]
fn the_reason_is_trimmed_and_a_blank_one_is_none() {
    given([placed()]).when(cancel(Some("  too slow \n"))).then([OrderEvent::OrderCancelled {
        reason: Some("too slow".into()),
    }]);
    given([placed()]).when(cancel(Some("   "))).then([cancelled()]);
}

#[test]
fn an_overlong_reason_is_rejected() {
    given([placed()]).when(cancel(Some(&"x".repeat(501)))).then_code("BAD_USER_INPUT");
    given([placed()]).when(cancel(Some(&"x".repeat(500)))).then([OrderEvent::OrderCancelled {
        reason: Some("x".repeat(500)),
    }]);
}

// ---------------------------------------------------------------- forbidden moves

#[test]
fn a_placed_order_cannot_ship_before_preparation() {
    given([placed()])
        .when(OrderCommand::Ship)
        .then_error(invalid(OrderStatus::Placed, OrderAction::Ship));
}

#[test]
fn preparation_starts_only_once() {
    given([placed(), preparing()])
        .when(OrderCommand::StartPreparation)
        .then_error(invalid(OrderStatus::Preparing, OrderAction::StartPreparation));
}

#[test]
fn a_shipped_order_is_final() {
    use OrderAction::*;
    for (command, action) in [
        (OrderCommand::StartPreparation, StartPreparation),
        (OrderCommand::Ship, Ship),
        (cancel(Some("late")), Cancel),
    ] {
        given([placed(), preparing(), shipped()])
            .when(command)
            .then_error(invalid(OrderStatus::Shipped, action));
    }
}

#[test]
fn a_cancelled_order_is_final() {
    use OrderAction::*;
    for history in [vec![placed(), cancelled()], vec![placed(), preparing(), cancelled()]] {
        for (command, action) in [
            (OrderCommand::StartPreparation, StartPreparation),
            (OrderCommand::Ship, Ship),
            (cancel(None), Cancel),
        ] {
            given(history.clone()).when(command).then_error(invalid(OrderStatus::Cancelled, action));
        }
    }
}

#[test]
fn the_state_check_comes_before_the_reason_check() {
    given([placed(), preparing(), shipped()])
        .when(cancel(Some(&"x".repeat(501))))
        .then_code("INVALID_ORDER_STATE");
}

// ---------------------------------------------------------------- state

#[test]
fn an_empty_stream_is_no_order() {
    assert_eq!(fold(&[]), None);
    assert_eq!(OrderState::default(), None);
    assert_eq!(fold(&[shipped()]), None);
}

#[test]
fn the_state_survives_a_snapshot() {
    let order = fold(&[placed(), preparing()]);
    let json = serde_json::to_value(&order).unwrap();
    assert_eq!(json["status"], "PREPARING");
    assert_eq!(serde_json::from_value::<OrderState>(json).unwrap(), order);
}

//! Random command sequences against a deliberately simple model of a cart:
//! a map of sku -> quantity (plus each line's first price and the order the
//! skus came in) and an open flag.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::event::Event;
use crate::place_order::decide_place_order;
use crate::product::{self, Product, ProductEvent};
use crate::testing::{cart_id, cents, customer, order_id, sku};

#[derive(Clone, Debug)]
enum Op {
    Create,
    Add { sku: usize, quantity: i64, price: i64 },
    Change { sku: usize, quantity: i64 },
    Remove { sku: usize },
    Clear,
    Checkout,
}

#[derive(Debug, Default)]
struct Model {
    exists: bool,
    open: bool,
    quantities: BTreeMap<Sku, u32>,
    prices: BTreeMap<Sku, Money>,
    order: Vec<Sku>,
}

impl Model {
    /// What the command should do: `Ok` (with the model updated) or the
    /// expected error code (with the model untouched).
    fn apply(&mut self, op: &Op, skus: &[Sku]) -> Result<(), &'static str> {
        if let Op::Create = op {
            if self.exists {
                return Err("BAD_USER_INPUT");
            }
            self.exists = true;
            self.open = true;
            return Ok(());
        }
        if !self.exists {
            return Err("NOT_FOUND");
        }
        if !self.open {
            return Err("CART_NOT_OPEN");
        }
        let valid = |q: i64| (1..=999).contains(&q);
        match op {
            Op::Create => unreachable!(),
            Op::Add { sku, quantity, price } => {
                let sku = &skus[*sku];
                if !valid(*quantity) || *price <= 0 {
                    return Err("BAD_USER_INPUT");
                }
                let quantity = *quantity as u32;
                let lines = self.quantities.len();
                match self.quantities.get_mut(sku) {
                    Some(q) if *q + quantity > 999 => return Err("BAD_USER_INPUT"),
                    Some(q) => *q += quantity,
                    None if lines >= 100 => return Err("BAD_USER_INPUT"),
                    None => {
                        self.quantities.insert(sku.clone(), quantity);
                        self.prices.insert(sku.clone(), cents(*price));
                        self.order.push(sku.clone());
                    }
                }
            }
            Op::Change { sku, quantity } => {
                let sku = &skus[*sku];
                if !valid(*quantity) {
                    return Err("BAD_USER_INPUT");
                }
                let q = self.quantities.get_mut(sku).ok_or("ITEM_NOT_IN_CART")?;
                *q = *quantity as u32;
            }
            Op::Remove { sku } => {
                let sku = &skus[*sku];
                self.quantities.remove(sku).ok_or("ITEM_NOT_IN_CART")?;
                self.prices.remove(sku);
                self.order.retain(|s| s != sku);
            }
            Op::Clear => {
                self.quantities.clear();
                self.prices.clear();
                self.order.clear();
            }
            Op::Checkout => {
                if self.quantities.is_empty() {
                    return Err("EMPTY_CART");
                }
                self.open = false;
            }
        }
        Ok(())
    }
}

/// Quantities that hit the boundaries often.
fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1i64..=5,
        2 => 995i64..=1000,
        2 => -2i64..=0,
        2 => 1i64..=999,
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(i64::from(u32::MAX) + 1)],
    ]
}

fn op(skus: usize, add_weight: u32) -> impl Strategy<Value = Op> {
    let sku = 0..skus;
    prop_oneof![
        1 => Just(Op::Create),
        add_weight => (sku.clone(), quantity(), prop_oneof![9 => 1i64..2000, 1 => -1i64..=0])
            .prop_map(|(sku, quantity, price)| Op::Add { sku, quantity, price }),
        3 => (sku.clone(), quantity()).prop_map(|(sku, quantity)| Op::Change { sku, quantity }),
        2 => sku.prop_map(|sku| Op::Remove { sku }),
        1 => Just(Op::Clear),
        1 => Just(Op::Checkout),
    ]
}

/// Mostly starting with `Create`, so that most steps act on an existing cart.
fn ops(skus: usize, add_weight: u32, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Op>> {
    (prop::bool::weighted(0.9), prop::collection::vec(op(skus, add_weight), len)).prop_map(|(create_first, mut ops)| {
        if create_first {
            ops.insert(0, Op::Create);
        }
        ops
    })
}

fn stocked(skus: &[Sku]) -> BTreeMap<Sku, Product> {
    skus.iter()
        .map(|s| {
            let product = product::fold(&[
                ProductEvent::ProductRegistered {
                    sku: s.clone(),
                    name: "n".into(),
                    price: cents(1),
                },
                ProductEvent::StockReceived { quantity: 100_000 },
            ]);
            (s.clone(), product.expect("registered"))
        })
        .collect()
}

fn command(op: &Op, skus: &[Sku]) -> CartCommand {
    match op {
        Op::Create => CartCommand::Create {
            cart_id: cart_id(1),
            customer_id: customer("alice"),
        },
        Op::Add { sku, quantity, price } => CartCommand::AddItem {
            sku: skus[*sku].clone(),
            quantity: *quantity,
            name: format!("name of {}", skus[*sku]),
            unit_price: cents(*price),
        },
        Op::Change { sku, quantity } => CartCommand::ChangeQuantity {
            sku: skus[*sku].clone(),
            quantity: *quantity,
        },
        Op::Remove { sku } => CartCommand::Remove { sku: skus[*sku].clone() },
        Op::Clear => CartCommand::Clear,
        Op::Checkout => unreachable!("checkout is decided by place_order"),
    }
}

fn check_against_model(state: &CartState, model: &Model) -> Result<(), TestCaseError> {
    let Some(cart) = state else {
        prop_assert!(!model.exists);
        return Ok(());
    };
    prop_assert!(model.exists);
    prop_assert_eq!(cart.is_open(), model.open);
    prop_assert_eq!(cart.order_id.is_some(), !model.open);
    let quantities: BTreeMap<Sku, u32> = cart.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
    prop_assert_eq!(quantities.len(), cart.lines.len(), "a sku appears twice");
    prop_assert_eq!(&quantities, &model.quantities);
    for line in &cart.lines {
        prop_assert_eq!(Some(&line.unit_price), model.prices.get(&line.sku));
    }
    let order: Vec<&Sku> = cart.lines.iter().map(|l| &l.sku).collect();
    prop_assert_eq!(order, model.order.iter().collect::<Vec<_>>());

    // Invariants.
    prop_assert!(cart.lines.len() <= MAX_LINES);
    for line in &cart.lines {
        prop_assert!((1..=MAX_LINE_QUANTITY).contains(&line.quantity));
    }
    prop_assert_eq!(cart.item_count(), model.quantities.values().sum::<u32>());
    let subtotal: i64 = cart.lines.iter().map(|l| l.unit_price.minor_units() * i64::from(l.quantity)).sum();
    prop_assert_eq!(cart.subtotal(), cents(subtotal));
    Ok(())
}

fn run(ops: &[Op], skus: &[Sku]) -> Result<(), TestCaseError> {
    let products = stocked(skus);
    let mut model = Model::default();
    let mut state: CartState = None;
    let mut history: Vec<CartEvent> = Vec::new();

    for op in ops {
        let expected = model.apply(op, skus);
        let outcome = match op {
            Op::Checkout => decide_place_order(&state, &products, order_id(1), None).map(|placed| {
                if let (Some(cart), [crate::order::OrderEvent::OrderPlaced { total, .. }]) = (&state, placed.order_events.as_slice()) {
                    assert_eq!(*total, cart.subtotal());
                }
                placed.cart_events
            }),
            _ => decide(&state, command(op, skus)),
        };
        match (&expected, outcome) {
            (Ok(()), Ok(events)) => {
                for event in &events {
                    let decoded = CartEvent::from_data(event.event_type(), event.to_data());
                    prop_assert_eq!(decoded.as_ref().ok(), Some(event));
                    state = evolve(state, event);
                }
                history.extend(events);
            }
            (Err(code), Err(error)) => prop_assert_eq!(*code, error.code(), "{:?}: {}", op, error),
            (expected, outcome) => {
                prop_assert!(false, "{:?}: model {:?}, domain {:?}", op, expected, outcome)
            }
        }
        check_against_model(&state, &model)?;
    }

    prop_assert_eq!(&fold(&history), &state, "folding the history from scratch");
    let snapshot = serde_json::to_value(&state).expect("serialisable");
    prop_assert_eq!(serde_json::from_value::<CartState>(snapshot).ok(), Some(state));
    Ok(())
}

fn skus(n: usize) -> Vec<Sku> {
    (0..n).map(|i| sku(&format!("sku-{i}"))).collect()
}

/// Mostly valid adds over many skus, so that carts fill up to 100 lines.
fn crowding_ops() -> impl Strategy<Value = Vec<Op>> {
    let add = (0..250usize, 1i64..=3, 1i64..100).prop_map(|(sku, quantity, price)| Op::Add { sku, quantity, price });
    let op = prop_oneof![
        30 => add,
        1 => (0..250usize).prop_map(|sku| Op::Remove { sku }),
        1 => (0..250usize, quantity()).prop_map(|(sku, quantity)| Op::Change { sku, quantity }),
        1 => (0..250usize, quantity()).prop_map(|(sku, quantity)| Op::Add { sku, quantity, price: 5 }),
    ];
    prop::collection::vec(op, 100..300).prop_map(|mut ops| {
        ops.insert(0, Op::Create);
        ops
    })
}

proptest! {
    /// Few skus: lines collide, quantities pile up against 999.
    #[test]
    fn a_cart_behaves_like_the_model(ops in ops(4, 6, 0..120)) {
        run(&ops, &skus(4))?;
    }

}

proptest! {
    // Long sequences; fewer cases keep the suite quick, and most of them
    // still reach the 100-line limit.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Many skus and mostly adds: the cart fills up against 100 lines.
    #[test]
    fn a_crowded_cart_behaves_like_the_model(ops in crowding_ops()) {
        run(&ops, &skus(250))?;
    }
}

//! Random place / prepare / cancel / ship / receive sequences over two
//! products, against a simple model of stock: units on hand and units
//! reserved per order. Stock settles through the same path as in production:
//! `decide_place_order`, then the order's commands, then the inventory
//! reactor's `decide_inventory_commands`.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::cart::{self, CartEvent};
use crate::event::Event;
use crate::order::{self, OrderCommand, OrderState};
use crate::product::ProductState;
use crate::testing::{cart_id, cents, customer, order_id, sku};

#[derive(Clone, Debug)]
enum Op {
    Receive {
        product: usize,
        quantity: i64,
    },
    /// Places an order of `quantities[p]` units of each product (0: none).
    Place {
        quantities: [u32; 2],
    },
    StartPreparation {
        order: usize,
    },
    Cancel {
        order: usize,
    },
    Ship {
        order: usize,
    },
    /// The inventory reactor sees an order's last event again.
    Replay {
        order: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, -1i64..=10).prop_map(|(product, quantity)| Op::Receive { product, quantity }),
        4 => [0u32..=8, 0u32..=8].prop_map(|quantities| Op::Place { quantities }),
        2 => any::<usize>().prop_map(|order| Op::StartPreparation { order }),
        2 => any::<usize>().prop_map(|order| Op::Cancel { order }),
        2 => any::<usize>().prop_map(|order| Op::Ship { order }),
        1 => any::<usize>().prop_map(|order| Op::Replay { order }),
    ]
}

#[derive(Debug, Default)]
struct Model {
    on_hand: [u32; 2],
    /// Units held per product, by order number.
    reserved: [BTreeMap<usize, u32>; 2],
    orders: Vec<OrderStatus>,
}

impl Model {
    fn available(&self, p: usize) -> u32 {
        self.on_hand[p] - self.reserved[p].values().sum::<u32>()
    }

    /// Releases (cancel) or removes from stock (ship) what an order holds.
    fn settle(&mut self, order: usize, ship: bool) {
        for p in 0..2 {
            if let Some(units) = self.reserved[p].remove(&order) {
                if ship {
                    self.on_hand[p] -= units;
                }
            }
        }
    }
}

fn skus() -> [Sku; 2] {
    [sku("a"), sku("b")]
}

fn index_of(s: &Sku) -> usize {
    skus().iter().position(|k| k == s).expect("one of the two skus")
}

/// The world: two product streams and the order streams, with every event
/// each has received.
struct World {
    products: [ProductState; 2],
    product_history: [Vec<ProductEvent>; 2],
    orders: Vec<OrderState>,
    order_history: Vec<Vec<OrderEvent>>,
}

impl World {
    fn new() -> Self {
        let history = |s: Sku| {
            vec![ProductEvent::ProductRegistered {
                sku: s,
                name: "n".into(),
                price: cents(100),
            }]
        };
        let [a, b] = skus();
        let product_history = [history(a), history(b)];
        World {
            products: [product::fold(&product_history[0]), product::fold(&product_history[1])],
            product_history,
            orders: Vec::new(),
            order_history: Vec::new(),
        }
    }

    fn append_product(&mut self, p: usize, events: Vec<ProductEvent>) -> Result<(), TestCaseError> {
        for event in events {
            let decoded = ProductEvent::from_data(event.event_type(), event.to_data());
            prop_assert_eq!(decoded.as_ref().ok(), Some(&event));
            self.products[p] = product::evolve(self.products[p].take(), &event);
            self.product_history[p].push(event);
        }
        Ok(())
    }

    fn append_order(&mut self, o: usize, events: Vec<OrderEvent>) -> Result<(), TestCaseError> {
        for event in events {
            let decoded = OrderEvent::from_data(event.event_type(), event.to_data());
            prop_assert_eq!(decoded.as_ref().ok(), Some(&event));
            self.orders[o] = order::evolve(self.orders[o].take(), &event);
            self.order_history[o].push(event);
        }
        Ok(())
    }

    /// What the inventory reactor does after an order event; returns how
    /// many events it appended.
    fn react(&mut self, o: usize) -> Result<usize, TestCaseError> {
        let order = self.orders[o].clone().expect("placed");
        let mut appended = 0;
        for (s, command) in decide_inventory_commands(&order) {
            let p = index_of(&s);
            let events = product::decide(&self.products[p], command);
            prop_assert!(events.is_ok(), "reactor command rejected: {:?}", events);
            let events = events.unwrap_or_default();
            appended += events.len();
            self.append_product(p, events)?;
        }
        Ok(appended)
    }

    fn products_by_sku(&self) -> BTreeMap<Sku, Product> {
        self.products.iter().flatten().map(|p| (p.sku.clone(), p.clone())).collect()
    }
}

fn cart_ordering(quantities: [u32; 2]) -> cart::CartState {
    let mut events = vec![CartEvent::CartCreated {
        cart_id: cart_id(1),
        customer_id: customer("alice"),
    }];
    for (s, quantity) in skus().into_iter().zip(quantities) {
        if quantity > 0 {
            events.push(CartEvent::ItemAddedToCart {
                sku: s,
                name: "n".into(),
                quantity,
                unit_price: cents(100),
            });
        }
    }
    cart::fold(&events)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = World::new();
    let mut model = Model::default();

    for op in ops {
        match op {
            Op::Receive { product: p, quantity } => {
                let outcome = product::decide(&world.products[*p], ProductCommand::ReceiveStock { quantity: *quantity });
                if *quantity < 1 {
                    prop_assert_eq!(outcome.map_err(|e| e.code()), Err("BAD_USER_INPUT"));
                } else {
                    model.on_hand[*p] += *quantity as u32;
                    world.append_product(*p, outcome?)?;
                }
            }
            Op::Place { quantities } => {
                let number = world.orders.len();
                let outcome = decide_place_order(&cart_ordering(*quantities), &world.products_by_sku(), order_id(number as u128), None);
                let lines: Vec<(usize, u32)> = (0..2).map(|p| (p, quantities[p])).filter(|(_, q)| *q > 0).collect();
                let short = lines.iter().find(|(p, q)| *q > model.available(*p));
                let expected = match (lines.is_empty(), short) {
                    (true, _) => Err(DomainError::EmptyCart),
                    (false, Some((p, q))) => Err(DomainError::OutOfStock {
                        sku: skus()[*p].clone(),
                        requested: *q,
                        available: model.available(*p),
                    }),
                    (false, None) => Ok(()),
                };
                match (expected, outcome) {
                    (Ok(()), Ok(placed)) => {
                        prop_assert_eq!(placed.product_events.len(), lines.len());
                        for (s, events) in placed.product_events {
                            world.append_product(index_of(&s), events)?;
                        }
                        world.orders.push(None);
                        world.order_history.push(Vec::new());
                        world.append_order(number, placed.order_events)?;
                        for (p, q) in lines {
                            model.reserved[p].insert(number, q);
                        }
                        model.orders.push(OrderStatus::Placed);
                    }
                    (Err(expected), outcome) => prop_assert_eq!(outcome, Err(expected)),
                    (Ok(()), Err(e)) => prop_assert!(false, "{:?} rejected: {}", op, e),
                }
            }
            Op::StartPreparation { order } | Op::Cancel { order } | Op::Ship { order } => {
                if model.orders.is_empty() {
                    continue;
                }
                let o = order % model.orders.len();
                let (command, from, to) = match op {
                    Op::StartPreparation { .. } => (OrderCommand::StartPreparation, &[OrderStatus::Placed][..], OrderStatus::Preparing),
                    Op::Ship { .. } => (OrderCommand::Ship, &[OrderStatus::Preparing][..], OrderStatus::Shipped),
                    _ => (
                        OrderCommand::Cancel { reason: None },
                        &[OrderStatus::Placed, OrderStatus::Preparing][..],
                        OrderStatus::Cancelled,
                    ),
                };
                let outcome = order::decide(&world.orders[o], command);
                if from.contains(&model.orders[o]) {
                    model.orders[o] = to;
                    world.append_order(o, outcome?)?;
                    let appended = world.react(o)?;
                    match to {
                        OrderStatus::Cancelled | OrderStatus::Shipped => {
                            let held = (0..2).filter(|p| model.reserved[*p].contains_key(&o)).count();
                            prop_assert_eq!(appended, held);
                            model.settle(o, to == OrderStatus::Shipped);
                        }
                        _ => prop_assert_eq!(appended, 0),
                    }
                } else {
                    prop_assert_eq!(outcome.map_err(|e| e.code()), Err("INVALID_ORDER_STATE"));
                }
            }
            Op::Replay { order } => {
                if model.orders.is_empty() {
                    continue;
                }
                let o = order % model.orders.len();
                prop_assert_eq!(world.react(o)?, 0, "a replayed event settled stock twice");
            }
        }

        // After every step: stock matches the model and is never negative.
        for p in 0..2 {
            let product = world.products[p].as_ref().expect("registered");
            prop_assert_eq!(product.on_hand, model.on_hand[p]);
            let reserved: BTreeMap<OrderId, u32> = model.reserved[p].iter().map(|(o, q)| (order_id(*o as u128), *q)).collect();
            prop_assert_eq!(&product.reserved, &reserved);
            prop_assert!(product.reserved_total() <= product.on_hand, "negative availability");
            prop_assert_eq!(product.available(), model.available(p));
        }
        for (o, status) in model.orders.iter().enumerate() {
            prop_assert_eq!(world.orders[o].as_ref().map(|order| order.status), Some(*status));
        }
    }

    for p in 0..2 {
        prop_assert_eq!(&product::fold(&world.product_history[p]), &world.products[p]);
        let snapshot = serde_json::to_value(&world.products[p]).expect("serialisable");
        let restored = serde_json::from_value::<ProductState>(snapshot).ok();
        prop_assert_eq!(restored.as_ref(), Some(&world.products[p]));
    }
    for (o, history) in world.order_history.iter().enumerate() {
        prop_assert_eq!(&order::fold(history), &world.orders[o]);
    }
    Ok(())
}

proptest! {
    #[test]
    fn stock_behaves_like_the_model(ops in prop::collection::vec(op(), 0..150)) {
        run(&ops)?;
    }
}

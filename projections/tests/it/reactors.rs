//! Reactors act on orders, and act once: a replay from an earlier checkpoint, a crash
//! between a command and its checkpoint, and two leaders at once all leave one effect.

use crate::common::*;
use domain::OrderCommand;
use projections::reactors::Reactor;
use store::{Database, RecordedEvent};

async fn order_event(db: &Database, order: domain::OrderId, event_type: &str) -> RecordedEvent {
    db.store()
        .read_stream(&order.stream_id(), 1, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == event_type)
        .unwrap_or_else(|| panic!("no {event_type}"))
}

fn count(types: &[String], event_type: &str) -> usize {
    types.iter().filter(|t| t.as_str() == event_type).count()
}

async fn notifications(db: &Database, projections: &projections::Projections, customer: &str) -> Vec<String> {
    let _ = db;
    projections
        .read()
        .notifications_of(customer, 100, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|(_, n)| n.kind)
        .collect()
}

/// Two orders: one shipped, one cancelled, with the reactors doing their part.
async fn history(db: &Database) -> (domain::OrderId, domain::OrderId) {
    register(db, "tea", 450, 10).await;
    register(db, "mug", 1200, 10).await;
    let cart = create_cart(db, "alice").await;
    add(db, cart, "tea", 2, 450).await;
    add(db, cart, "mug", 1, 1200).await;
    let (shipped, _) = place(db, cart).await;
    let cart = create_cart(db, "alice").await;
    add(db, cart, "tea", 3, 450).await;
    let (cancelled, _) = place(db, cart).await;
    (shipped, cancelled)
}

async fn reactors_prepare_release_ship_and_notify(db: Database) {
    let (shipped, cancelled) = history(&db).await;
    let projections = inline(&db, true);
    projections.run_until_caught_up().await.unwrap();
    // Fulfilment started both; now ship one and cancel the other.
    assert_eq!(
        stream_types(&db, &shipped.stream_id()).await,
        vec!["OrderPlaced", "OrderPreparationStarted"]
    );
    let preparing = order_event(&db, shipped, "OrderPreparationStarted").await;
    assert_eq!(preparing.metadata.actor, "fulfilment");
    assert_eq!(
        preparing.metadata.causation_id,
        Some(order_event(&db, shipped, "OrderPlaced").await.event_id)
    );
    order_command(&db, shipped, OrderCommand::Ship).await;
    order_command(&db, cancelled, OrderCommand::Cancel { reason: None }).await;
    projections.run_until_caught_up().await.unwrap();

    let tea = stream_types(&db, &sku("tea").stream_id()).await;
    assert_eq!(
        (count(&tea, "StockReserved"), count(&tea, "StockShipped"), count(&tea, "StockReleased")),
        (2, 1, 1)
    );
    let mug = stream_types(&db, &sku("mug").stream_id()).await;
    assert_eq!((count(&mug, "StockShipped"), count(&mug, "StockReleased")), (1, 0));
    let read = projections.read();
    let tea = read.product("tea").await.unwrap().unwrap();
    assert_eq!((tea.on_hand, tea.reserved, tea.available), (8, 0, 8));
    let mug = read.product("mug").await.unwrap().unwrap();
    assert_eq!((mug.on_hand, mug.reserved, mug.available), (9, 0, 9));
    assert_eq!(
        read.order(*cancelled.as_uuid()).await.unwrap().unwrap().status,
        domain::OrderStatus::Cancelled
    );
    let mut kinds = notifications(&db, &projections, "alice").await;
    kinds.sort();
    assert_eq!(kinds, vec!["ORDER_CANCELLED", "ORDER_PLACED", "ORDER_PLACED", "ORDER_SHIPPED"]);
}

/// Everything the reactors and the notification projection left, to compare after a repeat.
async fn effects(db: &Database, projections: &projections::Projections, orders: &[domain::OrderId]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for order in orders {
        out.push(stream_types(db, &order.stream_id()).await);
    }
    out.push(stream_types(db, &sku("tea").stream_id()).await);
    out.push(stream_types(db, &sku("mug").stream_id()).await);
    out.push(notifications(db, projections, "alice").await);
    out
}

async fn a_replay_acts_once(db: Database) {
    let (shipped, cancelled) = history(&db).await;
    let projections = inline(&db, true);
    projections.run_until_caught_up().await.unwrap();
    order_command(&db, shipped, OrderCommand::Ship).await;
    order_command(&db, cancelled, OrderCommand::Cancel { reason: Some("no".into()) }).await;
    projections.run_until_caught_up().await.unwrap();
    let before = effects(&db, &projections, &[shipped, cancelled]).await;
    let head = db.store().head_position().await.unwrap();

    // An operator (or a restored backup) sends the reactors back to the start.
    sql(
        &db,
        "update projection_checkpoints set position = 0 where name in ('fulfilment', 'inventory', 'notifications')",
    )
    .await;
    projections.run_until_caught_up().await.unwrap();
    assert_eq!(effects(&db, &projections, &[shipped, cancelled]).await, before);
    assert_eq!(db.store().head_position().await.unwrap(), head, "the replay appended nothing");
}

async fn a_crash_between_command_and_checkpoint_acts_once(db: Database) {
    let (shipped, cancelled) = history(&db).await;
    // The reactors acted on these events, then "crashed" before their checkpoints moved.
    for order in [shipped, cancelled] {
        Reactor::Fulfilment
            .react(&db.store(), &order_event(&db, order, "OrderPlaced").await)
            .await
            .unwrap();
    }
    order_command(&db, cancelled, OrderCommand::Cancel { reason: None }).await;
    Reactor::Inventory
        .react(&db.store(), &order_event(&db, cancelled, "OrderCancelled").await)
        .await
        .unwrap();
    let head = db.store().head_position().await.unwrap();
    let projections = inline(&db, true);
    let fulfilment = projections.status("fulfilment").await.unwrap();
    assert!(fulfilment.position < head, "the checkpoint did not move");

    projections.run_until_caught_up().await.unwrap();
    assert_eq!(db.store().head_position().await.unwrap(), head, "the restart appended nothing");
    assert_eq!(
        stream_types(&db, &shipped.stream_id()).await,
        vec!["OrderPlaced", "OrderPreparationStarted"]
    );
    assert_eq!(
        stream_types(&db, &cancelled.stream_id()).await,
        vec!["OrderPlaced", "OrderPreparationStarted", "OrderCancelled"]
    );
    assert_eq!(count(&stream_types(&db, &sku("tea").stream_id()).await, "StockReleased"), 1);
}

async fn two_leaders_at_once_act_once(db: Database) {
    let (shipped, cancelled) = history(&db).await;
    let store = db.store();
    for order in [shipped, cancelled] {
        let placed = order_event(&db, order, "OrderPlaced").await;
        let (a, b) = tokio::join!(Reactor::Fulfilment.react(&store, &placed), Reactor::Fulfilment.react(&store, &placed));
        a.unwrap();
        b.unwrap();
    }
    assert_eq!(
        stream_types(&db, &shipped.stream_id()).await,
        vec!["OrderPlaced", "OrderPreparationStarted"]
    );
    order_command(&db, shipped, OrderCommand::Ship).await;
    order_command(&db, cancelled, OrderCommand::Cancel { reason: None }).await;
    let ship = order_event(&db, shipped, "OrderShipped").await;
    let cancel = order_event(&db, cancelled, "OrderCancelled").await;
    let (a, b, c, d) = tokio::join!(
        Reactor::Inventory.react(&store, &ship),
        Reactor::Inventory.react(&store, &ship),
        Reactor::Inventory.react(&store, &cancel),
        Reactor::Inventory.react(&store, &cancel),
    );
    for result in [a, b, c, d] {
        result.unwrap();
    }
    let tea = stream_types(&db, &sku("tea").stream_id()).await;
    assert_eq!((count(&tea, "StockShipped"), count(&tea, "StockReleased")), (1, 1));
    let mug = stream_types(&db, &sku("mug").stream_id()).await;
    assert_eq!(count(&mug, "StockShipped"), 1);
    let projections = inline(&db, true);
    projections.run_until_caught_up().await.unwrap();
    let tea = projections.read().product("tea").await.unwrap().unwrap();
    assert_eq!((tea.on_hand, tea.reserved), (8, 0));
}

backends!(
    reactors_prepare_release_ship_and_notify,
    a_replay_acts_once,
    a_crash_between_command_and_checkpoint_acts_once,
    two_leaders_at_once_act_once
);

//! The one command loop (`projections::commands`): concurrent writers without an expected
//! version all apply, an expected version is enforced, idempotent repeats return the first
//! outcome, placing an order re-decides on concurrent stock changes.

mod common;

use common::*;
use domain::{CartCommand, DomainError, Money, OrderId};
use projections::commands::{execute, place_order, CommandContext, CommandError};
use store::aggregate::CartAggregate;
use store::Database;
use uuid::Uuid;

fn add_one(sku_name: &str) -> CartCommand {
    CartCommand::AddItem {
        sku: sku(sku_name),
        quantity: 1,
        name: "Tea".into(),
        unit_price: Money::from_minor(100),
    }
}

async fn concurrent_adds_without_expected_version_all_apply(db: Database) {
    let cart = create_cart(&db, "alice").await;
    let store = db.store();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let command = add_one("tea");
            execute::<CartAggregate>(store.as_ref(), &ctx("alice"), &cart.stream_id(), None, |s| {
                domain::cart::decide(s, command.clone())
            })
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("every add applies");
    }
    let types = stream_types(&db, &cart.stream_id()).await;
    assert_eq!(types.len(), 21);
    let loaded = store::aggregate::load::<CartAggregate>(store.as_ref(), &cart.stream_id()).await.unwrap();
    assert_eq!(loaded.state.unwrap().item_count(), 20);
}

async fn an_expected_version_conflict_says_both_versions(db: Database) {
    let cart = create_cart(&db, "alice").await;
    add(&db, cart, "tea", 1, 100).await;
    let command = add_one("tea");
    let error = execute::<CartAggregate>(db.store().as_ref(), &ctx("alice"), &cart.stream_id(), Some(1), |s| {
        domain::cart::decide(s, command.clone())
    })
    .await
    .unwrap_err();
    assert!(matches!(error, CommandError::Conflict { expected: 1, actual: 2 }), "{error:?}");
    let done = execute::<CartAggregate>(db.store().as_ref(), &ctx("alice"), &cart.stream_id(), Some(2), |s| {
        domain::cart::decide(s, command.clone())
    })
    .await
    .unwrap();
    assert_eq!(done.version, 3);
}

async fn an_idempotent_repeat_returns_the_first_outcome(db: Database) {
    let cart = create_cart(&db, "alice").await;
    let context = CommandContext {
        idempotency_key: Some("k-1".into()),
        fingerprint: "add tea 1".into(),
        ..ctx("alice")
    };
    let command = add_one("tea");
    let first = execute::<CartAggregate>(db.store().as_ref(), &context, &cart.stream_id(), None, |s| {
        domain::cart::decide(s, command.clone())
    })
    .await
    .unwrap();
    add(&db, cart, "mug", 1, 100).await;
    let head = db.store().head_position().await.unwrap();
    let again = execute::<CartAggregate>(db.store().as_ref(), &context, &cart.stream_id(), None, |s| {
        domain::cart::decide(s, command.clone())
    })
    .await
    .unwrap();
    assert!(again.replayed && !first.replayed);
    assert_eq!(
        (again.version, again.position, &again.state),
        (first.version, first.position, &first.state)
    );
    assert_eq!(db.store().head_position().await.unwrap(), head, "the repeat appended nothing");
    assert_eq!(stream_types(&db, &cart.stream_id()).await.len(), 3);
    let reused = CommandContext {
        fingerprint: "something else".into(),
        ..context
    };
    let error = execute::<CartAggregate>(db.store().as_ref(), &reused, &cart.stream_id(), None, |s| {
        domain::cart::decide(s, command.clone())
    })
    .await
    .unwrap_err();
    assert!(matches!(error, CommandError::IdempotencyKeyReused), "{error:?}");
}

async fn placing_orders_re_decides_on_concurrent_stock_changes(db: Database) {
    register(&db, "tea", 100, 8).await;
    let mut carts = Vec::new();
    for i in 0..8 {
        let cart = create_cart(&db, &format!("c{i}")).await;
        add(&db, cart, "tea", 1, 100).await;
        carts.push(cart);
    }
    let store = db.store();
    let mut tasks = Vec::new();
    for cart in carts {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            place_order(store.as_ref(), &ctx("customer"), cart, None, OrderId::from_uuid(Uuid::now_v7())).await
        }));
    }
    // Deliveries land on the same product stream meanwhile.
    for _ in 0..4 {
        receive(&db, "tea", 1).await;
    }
    for task in tasks {
        task.await.unwrap().expect("every order is placed despite the concurrent writes");
    }
    let loaded = store::aggregate::load::<store::aggregate::ProductAggregate>(store.as_ref(), &sku("tea").stream_id())
        .await
        .unwrap();
    let tea = loaded.state.unwrap();
    assert_eq!((tea.on_hand, tea.reserved_total(), tea.available()), (12, 8, 4));
}

async fn out_of_stock_names_sku_requested_and_available(db: Database) {
    register(&db, "tea", 100, 2).await;
    let cart = create_cart(&db, "alice").await;
    add(&db, cart, "tea", 3, 100).await;
    let head = db.store().head_position().await.unwrap();
    let error = place_order(db.store().as_ref(), &ctx("alice"), cart, None, OrderId::from_uuid(Uuid::now_v7()))
        .await
        .unwrap_err();
    match error {
        CommandError::Domain(DomainError::OutOfStock {
            sku: s,
            requested,
            available,
        }) => {
            assert_eq!((s.as_str(), requested, available), ("tea", 3, 2));
        }
        other => panic!("expected OUT_OF_STOCK, got {other:?}"),
    }
    assert_eq!(db.store().head_position().await.unwrap(), head, "a rejected order appends nothing");
}

backends!(
    concurrent_adds_without_expected_version_all_apply,
    an_expected_version_conflict_says_both_versions,
    an_idempotent_repeat_returns_the_first_outcome,
    placing_orders_re_decides_on_concurrent_stock_changes,
    out_of_stock_names_sku_requested_and_available,
);

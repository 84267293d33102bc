//! Loading aggregates (moved here from the store with the code): old schemas fold
//! through the domain, snapshots are used only under the current state schema version.

use std::sync::Arc;

use store::{AppendRequest, EventStore, ExpectedVersion, Metadata, Snapshot};

/// The committed seed-era fixture loads through the store and the domain: the lifted
/// lines fold into a cart like any current event would.
async fn seed_events_load_through_the_domain(store: Arc<dyn EventStore>) {
    use commands::{load, CartAggregate};
    use domain::{CartStatus, Money, Sku};

    let (stream, old) = store::testing::seed_cart_v1();
    store
        .append(AppendRequest::single(&stream, ExpectedVersion::NoStream, old))
        .await
        .unwrap();

    let loaded = load::<CartAggregate>(&*store, &stream).await.expect("load the seed cart");
    assert_eq!(loaded.version, 4);
    let cart = loaded.state.expect("the cart exists");
    assert_eq!(cart.status, CartStatus::Open);
    assert_eq!(cart.customer_id.as_str(), "alice");
    let lines: Vec<(&str, u32, Money)> = cart.lines.iter().map(|l| (l.sku.as_str(), l.quantity, l.unit_price)).collect();
    assert_eq!(lines, vec![("apple", 3, Money::ZERO), ("banana", 5, Money::ZERO)]);
    assert_eq!(cart.line(&Sku::parse("apple").unwrap()).map(|l| l.name.as_str()), Some("apple"));
}

/// Loading = the snapshot under the current state schema version + the events after it;
/// a snapshot from another schema version, or one that no longer reads back, is skipped.
async fn aggregates_load_from_a_valid_snapshot_and_skip_stale_ones(store: Arc<dyn EventStore>) {
    use commands::snapshot_if_due;
    use commands::{encode, load, CartAggregate};
    use domain::{cart, CartCommand, CartId, CustomerId, Money, Sku};

    let cart_id = CartId::from_uuid(uuid::Uuid::new_v4());
    let stream = cart_id.stream_id();
    let meta = Metadata {
        actor: "alice".into(),
        ..Default::default()
    };
    let mut state = domain::CartState::default();
    let apple = Sku::parse("apple").unwrap();
    let mut commands = vec![CartCommand::Create {
        cart_id,
        customer_id: CustomerId::parse("alice").unwrap(),
    }];
    commands.extend((0..5).map(|_| CartCommand::AddItem {
        sku: apple.clone(),
        quantity: 1,
        name: "Apple".into(),
        unit_price: Money::from_minor(120),
    }));
    for command in commands {
        let events = cart::decide(&state, command).expect("accepted");
        for event in &events {
            state = cart::evolve(state, event);
        }
        let version = store.stream_version(&stream).await.unwrap();
        store
            .append(AppendRequest::single(
                &stream,
                ExpectedVersion::Exact(version),
                events.iter().map(|e| encode(e, &meta)).collect(),
            ))
            .await
            .unwrap();
    }

    let fresh = load::<CartAggregate>(&*store, &stream).await.unwrap();
    assert_eq!((fresh.version, fresh.snapshot_version, &fresh.state), (6, None, &state));
    assert!(snapshot_if_due::<CartAggregate>(&*store, &stream, &fresh, 5).await.unwrap());
    assert!(
        !snapshot_if_due::<CartAggregate>(&*store, &stream, &fresh, 10).await.unwrap(),
        "not due yet"
    );

    // One more event after the snapshot.
    let events = cart::decide(
        &state,
        CartCommand::ChangeQuantity {
            sku: apple.clone(),
            quantity: 9,
        },
    )
    .unwrap();
    state = cart::evolve(state, &events[0]);
    store
        .append(AppendRequest::single(&stream, ExpectedVersion::Exact(6), vec![encode(&events[0], &meta)]))
        .await
        .unwrap();
    let from_snapshot = load::<CartAggregate>(&*store, &stream).await.unwrap();
    assert_eq!(
        (from_snapshot.version, from_snapshot.snapshot_version, &from_snapshot.state),
        (7, Some(6), &state)
    );

    // A snapshot written by older code under another schema version, claiming a later
    // version with a state that would mislead: ignored.
    let misleading = serde_json::json!({"id": cart_id, "customer_id": "mallory", "status": "OPEN", "lines": [], "order_id": null});
    store
        .save_snapshot(&Snapshot {
            stream_id: stream.clone(),
            state_schema_version: domain::cart::STATE_SCHEMA_VERSION - 1,
            version: 7,
            state: misleading,
        })
        .await
        .unwrap();
    assert_eq!(load::<CartAggregate>(&*store, &stream).await.unwrap().state, state);

    // A snapshot under the current number that no longer reads back: skipped, not trusted.
    store
        .save_snapshot(&Snapshot {
            stream_id: stream.clone(),
            state_schema_version: domain::cart::STATE_SCHEMA_VERSION,
            version: 7,
            state: serde_json::json!({"shape": "old"}),
        })
        .await
        .unwrap();
    let skipped = load::<CartAggregate>(&*store, &stream).await.unwrap();
    assert_eq!((skipped.version, skipped.snapshot_version, &skipped.state), (7, None, &state));
}

backends!(
    seed_events_load_through_the_domain,
    aggregates_load_from_a_valid_snapshot_and_skip_stale_ones
);

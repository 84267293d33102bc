//! The runner: read-your-writes, failures that stop one projection visibly and resume,
//! background workers, and zero-downtime rebuilds that equal the incremental result.

use std::time::Duration;

use crate::common::*;
use commands::{load, CartAggregate};
use domain::CartCommand;
use projections::{ProjectionError, ProjectionState, Projections, ProjectionsConfig, WaitError};
use store::{AppendRequest, Database, ExpectedVersion, Metadata, NewEvent, Position};

const MODELS: [&str; 5] = ["carts", "orders", "products", "notifications", "analytics"];

async fn status(projections: &Projections, name: &str) -> projections::ProjectionStatus {
    projections.status(name).await.expect("status")
}

/// An event no version of the domain can read, in a cart stream.
async fn append_garbage(db: &Database, cart: domain::CartId) -> Position {
    let event = NewEvent::new("ItemAddedToCart", 2, serde_json::json!({"garbage": true}), Metadata::default());
    db.store()
        .append(AppendRequest::single(cart.stream_id(), ExpectedVersion::Any, vec![event]))
        .await
        .expect("append")
        .last_position()
}

async fn a_bad_event_fails_only_its_projection(db: Database) {
    let cart = create_cart(&db, "alice").await;
    let before = add(&db, cart, "tea", 1, 100).await;
    let bad = append_garbage(&db, cart).await;
    let other = create_cart(&db, "bob").await;
    register(&db, "tea", 100, 10).await;
    let last = add(&db, other, "tea", 1, 100).await;

    let projections = inline(&db, false);
    let error = projections.run_until_caught_up().await.expect_err("carts fails");
    assert!(matches!(&error, ProjectionError::Failed(text) if text.contains("carts")), "{error}");

    let carts = status(&projections, "carts").await;
    assert_eq!(carts.state, ProjectionState::Failed);
    assert_eq!(carts.error_position, Some(bad));
    assert_eq!(carts.position, before, "everything before the bad event was applied");
    assert!(
        carts.last_error.as_deref().is_some_and(|e| e.contains("ItemAddedToCart")),
        "{:?}",
        carts.last_error
    );
    // The cart before the bad event is served; the one after it is not (yet).
    assert_eq!(projections.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 1);
    assert_eq!(projections.read().cart(*other.as_uuid()).await.unwrap(), None);
    // The others ran on.
    for name in ["orders", "products", "notifications"] {
        let s = status(&projections, name).await;
        assert_ne!(s.state, ProjectionState::Failed, "{name}");
        assert!(s.position >= last, "{name} at {} < {last}", s.position);
    }
    assert_eq!(projections.read().product("tea").await.unwrap().unwrap().available, 10);
    match projections.wait_for("carts", last, Duration::from_secs(5)).await {
        Err(WaitError::Failed(message)) => assert!(message.contains("ItemAddedToCart"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    // Analytics reads carts too: it stops at the same event.
    assert_eq!(status(&projections, "analytics").await.error_position, Some(bad));
}

/// A deterministic failure the operator can fix: a trigger that refuses one sku.
async fn a_failed_projection_resumes_after_a_fix(db: Database) {
    match &db {
        Database::Postgres(_) => {
            sql(
                &db,
                "create function refuse_poison() returns trigger language plpgsql as $$
                 begin if new.sku = 'poison' then raise exception 'poisoned sku refused'; end if; return new; end $$;
                 create trigger refuse_poison before insert on cart_lines for each row execute function refuse_poison();",
            )
            .await
        }
        Database::Sqlite(_) => {
            sql(&db, "create trigger refuse_poison before insert on cart_lines when new.sku = 'poison' begin select raise(abort, 'poisoned sku refused'); end;").await
        }
    }
    let cart = create_cart(&db, "alice").await;
    let good = add(&db, cart, "tea", 1, 100).await;
    let poison = add(&db, cart, "poison", 1, 100).await;
    let after = add(&db, cart, "tea", 2, 100).await;

    let projections = inline(&db, false);
    assert!(projections.run_until_caught_up().await.is_err());
    let carts = status(&projections, "carts").await;
    assert_eq!(
        (carts.state, carts.position, carts.error_position),
        (ProjectionState::Failed, good, Some(poison))
    );
    assert!(
        carts.last_error.as_deref().is_some_and(|e| e.contains("poisoned sku refused")),
        "{:?}",
        carts.last_error
    );
    // Resuming without a fix fails again at the same event.
    projections.resume("carts").await.unwrap();
    assert!(projections.run_until_caught_up().await.is_err());
    assert_eq!(status(&projections, "carts").await.error_position, Some(poison));

    match &db {
        Database::Postgres(_) => sql(&db, "drop trigger refuse_poison on cart_lines").await,
        Database::Sqlite(_) => sql(&db, "drop trigger refuse_poison").await,
    }
    let resumed = projections.resume("carts").await.unwrap();
    assert_ne!(resumed.state, ProjectionState::Failed);
    assert_eq!(resumed.last_error, None);
    projections.run_until_caught_up().await.expect("caught up after the fix");
    projections.wait_for("carts", after, WAIT).await.unwrap();
    let view = projections.read().cart(*cart.as_uuid()).await.unwrap().unwrap();
    assert_eq!(
        view.lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect::<Vec<_>>(),
        vec![("tea", 3), ("poison", 1)]
    );
}

async fn background_workers_serve_read_your_writes(db: Database) {
    let projections = Projections::start(
        db.clone(),
        ProjectionsConfig {
            worker_name: "bg".into(),
            ..ProjectionsConfig::default()
        },
        live(&db),
    )
    .await
    .unwrap();
    register(&db, "tea", 100, 10).await;
    let cart = create_cart(&db, "alice").await;
    let position = add(&db, cart, "tea", 3, 100).await;
    projections.wait_for("carts", position, WAIT).await.unwrap();
    assert_eq!(projections.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 3);
    // Products has no event at that position, yet it gets there.
    projections.wait_for("products", position, WAIT).await.unwrap();

    let (order, placed) = place(&db, cart).await;
    projections.wait_for("orders", placed, WAIT).await.unwrap();
    assert!(projections.read().order(*order.as_uuid()).await.unwrap().is_some());
    // Fulfilment reacts: the order moves to PREPARING in the read model without us.
    eventually("fulfilment started preparing", WAIT, || {
        let read = projections.read().clone();
        async move {
            read.order(*order.as_uuid())
                .await
                .ok()
                .flatten()
                .is_some_and(|o| o.status == domain::OrderStatus::Preparing)
        }
    })
    .await;
    // A bad event stops carts only; orders keep answering.
    let bad = append_garbage(&db, cart).await;
    assert!(matches!(projections.wait_for("carts", bad, WAIT).await, Err(WaitError::Failed(_))));
    projections.wait_for("orders", bad, WAIT).await.unwrap();
    assert!(matches!(
        projections.wait_for("nope", bad, WAIT).await,
        Err(WaitError::Store(ProjectionError::UnknownProjection(_)))
    ));

    let statuses = projections.statuses().await.unwrap();
    let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    for name in MODELS.iter().chain(&["fulfilment", "inventory"]) {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    assert!(statuses
        .iter()
        .all(|s| s.head_position >= s.position && s.leader.as_deref() == Some("bg")));
    projections.shutdown().await;
    let after = Projections::observer(db.clone());
    let orders = after.status("orders").await.unwrap();
    assert_eq!(orders.state, ProjectionState::Stopped);
    assert_eq!(after.status("carts").await.unwrap().state, ProjectionState::Failed);
}

/// Another process (an API-only node) waits for a projection that the event does not
/// concern: the worker wrote no checkpoint for it, yet the wait resolves, from reads alone.
async fn another_process_waits_for_any_projection(db: Database) {
    register(&db, "tea", 100, 10).await;
    let workers = Projections::start(
        db.clone(),
        ProjectionsConfig {
            worker_name: "elsewhere".into(),
            ..ProjectionsConfig::default()
        },
        live(&db),
    )
    .await
    .unwrap();
    let registered = db.store().head_position().await.unwrap();
    workers.wait_for("products", registered, WAIT).await.unwrap();
    let api = Projections::observer(db.clone());
    let cart = create_cart(&db, "alice").await;
    let position = add(&db, cart, "tea", 2, 100).await;
    for name in MODELS.iter().chain(&["fulfilment", "inventory"]) {
        api.wait_for(name, position, WAIT).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(api.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 2);
    let row = text(
        &db,
        "select position::text from projection_checkpoints where name = 'products'",
        "select cast(position as text) from projection_checkpoints where name = 'products'",
    )
    .await;
    assert_eq!(row, registered.0.to_string(), "products wrote nothing for the cart events");
    // Operators see it caught up all the same.
    assert_eq!(api.status("products").await.unwrap().position, db.store().head_position().await.unwrap());
    // A position nobody has reached yet is not reached.
    let future = Position(position.0 + (1 << 40));
    assert!(matches!(
        api.wait_for("products", future, Duration::from_millis(200)).await,
        Err(WaitError::Timeout)
    ));
    workers.shutdown().await;
}

/// A rebuild asked for by another process (no local nudge) reaches a worker that follows
/// the live feed: it re-reads its checkpoint row every few poll intervals.
async fn a_rebuild_requested_elsewhere_reaches_a_following_worker(db: Database) {
    shop_history(&db, 2).await;
    let live = live(&db);
    let workers = Projections::start(
        db.clone(),
        ProjectionsConfig {
            worker_name: "follower".into(),
            ..ProjectionsConfig::default()
        },
        live.clone(),
    )
    .await
    .unwrap();
    let head = db.store().head_position().await.unwrap();
    for name in MODELS {
        workers.wait_for(name, head, WAIT).await.unwrap();
    }
    eventually("the workers follow the live feed", WAIT, || {
        let live = live.clone();
        async move { live.subscriber_count() >= MODELS.len() }
    })
    .await;
    let api = Projections::observer(db.clone());
    api.rebuild("carts").await.unwrap();
    eventually("the rebuild swapped in", WAIT, || {
        let api = api.clone();
        async move {
            api.status("carts")
                .await
                .is_ok_and(|s| s.rebuild_progress.is_none() && s.state != ProjectionState::Rebuilding)
        }
    })
    .await;
    let generation = text(
        &db,
        "select generation::text from projection_checkpoints where name = 'carts'",
        "select cast(generation as text) from projection_checkpoints where name = 'carts'",
    )
    .await;
    assert_eq!(generation, "2");
    workers.shutdown().await;
}

async fn a_rebuild_equals_the_incremental_build(db: Database) {
    shop_history(&db, 12).await;
    let projections = Projections::new(
        db.clone(),
        ProjectionsConfig {
            run_reactors: true,
            rebuild_batch_size: 7,
            worker_name: "rebuild".into(),
            ..ProjectionsConfig::default()
        },
    );
    projections.run_until_caught_up().await.unwrap();
    let mut before = Vec::new();
    for name in MODELS {
        before.push(digest(&db, name).await);
    }
    assert!(before[0].len() > 200, "the history made rows: {}", before[0]);
    let a_cart = projections.read().carts_of("customer-0", None, 1, None).await.unwrap().items[0].1.clone();

    for name in MODELS {
        let status = projections.rebuild(name).await.unwrap();
        assert_eq!(status.state, ProjectionState::Rebuilding, "{name}");
        assert_eq!(status.rebuild_progress, Some(Position::START));
    }
    // Asking again while it runs changes nothing.
    assert_eq!(projections.rebuild("carts").await.unwrap().rebuild_progress, Some(Position::START));
    // The current copy keeps serving meanwhile.
    assert_eq!(projections.read().cart(a_cart.id).await.unwrap().as_ref(), Some(&a_cart));
    assert!(matches!(projections.rebuild("fulfilment").await, Err(ProjectionError::NotRebuildable(_))));
    assert!(matches!(projections.rebuild("nope").await, Err(ProjectionError::UnknownProjection(_))));

    projections.run_until_caught_up().await.unwrap();
    for (name, before) in MODELS.iter().zip(&before) {
        let status = status(&projections, name).await;
        assert_eq!(status.rebuild_progress, None, "{name} swapped");
        assert_ne!(status.state, ProjectionState::Rebuilding, "{name}");
        assert_eq!(&digest(&db, name).await, before, "{name}: the rebuilt copy equals the incremental one");
    }
    let generation = text(
        &db,
        "select generation::text from projection_checkpoints where name = 'carts'",
        "select cast(generation as text) from projection_checkpoints where name = 'carts'",
    )
    .await;
    assert_eq!(generation, "2");
    assert_eq!(projections.read().cart(a_cart.id).await.unwrap().as_ref(), Some(&a_cart));
}

/// Writes go on during a rebuild in the background; once it has swapped, every cart in the
/// read model equals the aggregate folded from its events.
async fn a_background_rebuild_keeps_serving_and_following(db: Database) {
    shop_history(&db, 6).await;
    let config = ProjectionsConfig {
        rebuild_batch_size: 5,
        worker_name: "bg".into(),
        ..ProjectionsConfig::default()
    };
    let projections = Projections::start(db.clone(), config, live(&db)).await.unwrap();
    let head = db.store().head_position().await.unwrap();
    projections.wait_for("carts", head, WAIT).await.unwrap();
    projections.rebuild("carts").await.unwrap();
    let mut carts = Vec::new();
    let mut last = head;
    for i in 0..10 {
        let cart = create_cart(&db, "late").await;
        last = add(&db, cart, "tea", 1 + i, 450).await;
        // Served (from the old generation while the rebuild runs) right after the write.
        projections.wait_for("carts", last, WAIT).await.unwrap();
        assert!(projections.read().cart(*cart.as_uuid()).await.unwrap().is_some());
        carts.push(cart);
    }
    eventually("the rebuild swapped in", WAIT, || {
        let projections = projections.clone();
        async move {
            projections
                .status("carts")
                .await
                .is_ok_and(|s| s.rebuild_progress.is_none() && s.state != ProjectionState::Rebuilding)
        }
    })
    .await;
    cart_command(&db, carts[0], CartCommand::Clear).await;
    let head = db.store().head_position().await.unwrap();
    projections.wait_for("carts", head.max(last), WAIT).await.unwrap();
    let page = projections.read().carts_of("late", None, 100, None).await.unwrap();
    assert_eq!(page.items.len(), 10);
    for (_, view) in page.items {
        let truth = load::<CartAggregate>(db.store().as_ref(), &domain::CartId::from_uuid(view.id).stream_id())
            .await
            .unwrap();
        let cart = truth.state.expect("cart exists");
        assert_eq!(view.version, truth.version);
        assert_eq!(view.item_count, cart.item_count());
        assert_eq!(view.subtotal, cart.subtotal().minor_units());
        assert_eq!(view.lines.len(), cart.lines.len());
    }
    projections.shutdown().await;
}

backends!(
    a_bad_event_fails_only_its_projection,
    a_failed_projection_resumes_after_a_fix,
    background_workers_serve_read_your_writes,
    another_process_waits_for_any_projection,
    a_rebuild_requested_elsewhere_reaches_a_following_worker,
    a_rebuild_equals_the_incremental_build,
    a_background_rebuild_keeps_serving_and_following,
);

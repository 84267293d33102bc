//! Retention and archiving (#15) on the read side, on both backends: the retention job
//! archives idle open carts only, the carts read model drops them, and a rebuild after
//! archiving equals the incremental read models (the feed reads the archive).

use std::time::Duration;

use crate::common::*;
use domain::CartCommand;
use projections::{Projections, ProjectionsConfig, Retention, RetentionConfig};
use store::{Database, StoreError};
use time::OffsetDateTime;

const MODELS: [&str; 5] = ["carts", "orders", "products", "notifications", "analytics"];

fn policy(batch_size: usize) -> RetentionConfig {
    RetentionConfig {
        batch_size,
        ..RetentionConfig::default()
    }
}

async fn retention_archives_idle_open_carts_and_a_rebuild_matches(db: Database) {
    // Carts 3 and 7 of the history stay open; two more open carts, one of them changed
    // after the read model last saw it.
    shop_history(&db, 8).await;
    let idle = create_cart(&db, "dora").await;
    add(&db, idle, "tea", 1, 450).await;
    let changed = create_cart(&db, "erin").await;
    let projections = inline(&db, true);
    projections.run_until_caught_up().await.unwrap();
    add(&db, changed, "mug", 1, 1200).await;
    let open_before = text(
        &db,
        "select count(*)::text from carts where status = 'OPEN'",
        "select cast(count(*) as text) from carts where status = 'OPEN'",
    )
    .await;
    assert_eq!(open_before, "4");

    let retention = Retention::new(db.clone(), policy(2));
    assert_eq!(
        retention.run_until_done(OffsetDateTime::now_utc()).await.unwrap(),
        0,
        "nothing is 30 days idle yet"
    );
    let later = OffsetDateTime::now_utc() + time::Duration::days(31);
    assert_eq!(
        retention.run_until_done(later).await.unwrap(),
        3,
        "the three idle open carts, not the changed one"
    );
    let store = store(&db);
    let tomb = store.archived_stream(&idle.stream_id()).await.unwrap().expect("archived");
    assert_eq!((tomb.version, tomb.reason.as_str(), tomb.actor.as_str()), (2, "RETENTION", "retention"));
    assert!(store.archived_stream(&changed.stream_id()).await.unwrap().is_none());
    assert!(matches!(
        store.read_stream(&idle.stream_id(), 1, 10).await,
        Err(StoreError::StreamArchived { version: 2, .. })
    ));

    projections.run_until_caught_up().await.unwrap();
    assert_eq!(projections.read().cart(*idle.as_uuid()).await.unwrap(), None, "the read model dropped it");
    assert!(projections.read().cart(*changed.as_uuid()).await.unwrap().is_some());
    let open_after = text(
        &db,
        "select count(*)::text from carts where status = 'OPEN'",
        "select cast(count(*) as text) from carts where status = 'OPEN'",
    )
    .await;
    assert_eq!(open_after, "1");
    // Once the read model shows its change, the changed cart is a candidate like any other
    // (a month later it is idle too).
    assert_eq!(retention.run_until_done(later).await.unwrap(), 1);
    assert_eq!(retention.run_until_done(later).await.unwrap(), 0);
    projections.run_until_caught_up().await.unwrap();
    assert_eq!(projections.read().cart(*changed.as_uuid()).await.unwrap(), None);

    let mut before = Vec::new();
    for name in MODELS {
        before.push(digest(&db, name).await);
    }
    for name in MODELS {
        projections.rebuild(name).await.unwrap();
    }
    projections.run_until_caught_up().await.unwrap();
    for (name, before) in MODELS.iter().zip(&before) {
        assert_eq!(
            &digest(&db, name).await,
            before,
            "{name}: the rebuild after archiving equals the read model"
        );
    }
}

/// The job runs in the background under its lease when the configuration asks for it.
async fn the_retention_worker_archives_in_the_background(db: Database) {
    let cart = create_cart(&db, "frank").await;
    let mut config = ProjectionsConfig {
        run_reactors: false,
        worker_name: "retention-test".into(),
        ..ProjectionsConfig::default()
    };
    config.retention = Some(RetentionConfig {
        idle_for: Duration::ZERO,
        batch_size: 10,
        pause: Duration::from_millis(10),
        interval: Duration::from_millis(50),
    });
    let workers = Projections::start(db.clone(), config, live(&db)).await.unwrap();
    let store = store(&db);
    eventually("the idle cart is archived", WAIT, || {
        let store = store.clone();
        let stream = cart.stream_id();
        async move { store.archived_stream(&stream).await.unwrap().is_some() }
    })
    .await;
    eventually("the read model dropped it", WAIT, || {
        let workers = workers.clone();
        async move { workers.read().cart(*cart.as_uuid()).await.unwrap().is_none() }
    })
    .await;
    assert!(
        workers.statuses().await.unwrap().iter().all(|s| s.name != "retention"),
        "the job is no projection"
    );
    let refused = commands::Commands::new(db.store())
        .execute::<commands::CartAggregate, _, _>(&ctx("frank"), &cart.stream_id(), None, move |s| {
            domain::cart::decide(s, CartCommand::Clear)
        })
        .await;
    assert!(
        matches!(&refused, Err(commands::CommandError::Store(e)) if matches!(e.as_ref(), StoreError::StreamArchived { .. })),
        "{refused:?}"
    );
    workers.shutdown().await;
}

backends!(
    retention_archives_idle_open_carts_and_a_rebuild_matches,
    the_retention_worker_archives_in_the_background
);

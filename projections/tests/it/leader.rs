//! Leader election on Postgres: two runners on one database, one leads each worker, the
//! standby takes over within seconds when the leader's lock connection dies, and the deposed
//! leader's fencing token can move the checkpoint neither forward nor back.

use std::time::{Duration, Instant};

use crate::common::*;
use projections::checkpoint;
use projections::{ProjectionError, Projections, ProjectionsConfig};
use store::{Database, Position};

fn config(worker: &str) -> ProjectionsConfig {
    ProjectionsConfig {
        worker_name: worker.into(),
        run_reactors: true,
        leader_retry: Duration::from_millis(200),
        ..ProjectionsConfig::default()
    }
}

async fn leader_of(projections: &Projections, name: &str) -> Option<String> {
    projections.status(name).await.ok().and_then(|s| s.leader)
}

async fn terminate_locks_of(db: &Database, worker: &str) -> i64 {
    let Database::Postgres(store) = db else { unreachable!() };
    sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = current_database() and application_name like $1",
    )
    .bind(format!("cs-lock:{worker}:%"))
    .fetch_one(store.pool())
    .await
    .expect("terminate the leader's lock connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_takes_over_and_the_deposed_leader_is_fenced() {
    let pg = store::testing::postgres().await;
    let db1 = store::open(&pg.url).await.unwrap();
    let db2 = store::open(&pg.url).await.unwrap();
    let first = Projections::start(db1.clone(), config("w1"), live(&db1)).await.unwrap();
    for name in ["carts", "orders", "fulfilment"] {
        let first = first.clone();
        eventually(&format!("w1 leads {name}"), WAIT, move || {
            let first = first.clone();
            async move { leader_of(&first, name).await.as_deref() == Some("w1") }
        })
        .await;
    }
    let second = Projections::start(db2.clone(), config("w2"), live(&db2)).await.unwrap();

    register(&db1, "tea", 100, 10).await;
    let cart = create_cart(&db1, "alice").await;
    let position = add(&db1, cart, "tea", 1, 100).await;
    second.wait_for("carts", position, WAIT).await.unwrap();
    assert_eq!(
        leader_of(&second, "carts").await.as_deref(),
        Some("w1"),
        "the standby did not take over a live leader"
    );
    let deposed_epoch = checkpoint::epoch(&db1, "carts").await.unwrap();

    assert!(terminate_locks_of(&db1, "w1").await >= 5, "w1 held the lock of every worker");
    let killed = Instant::now();
    for name in ["carts", "orders", "products", "notifications", "analytics", "fulfilment", "inventory"] {
        let second = second.clone();
        eventually(&format!("w2 leads {name}"), Duration::from_secs(10), move || {
            let second = second.clone();
            async move { leader_of(&second, name).await.as_deref() == Some("w2") }
        })
        .await;
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");

    // The new leader serves: writes after the takeover reach the read models and reactors.
    let position = add(&db2, cart, "tea", 2, 100).await;
    second.wait_for("carts", position, WAIT).await.unwrap();
    assert_eq!(second.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 3);
    let (order, placed) = place(&db2, cart).await;
    second.wait_for("orders", placed, WAIT).await.unwrap();
    eventually("the new fulfilment leader reacted", WAIT, || {
        let db = db2.clone();
        async move { stream_types(&db, &order.stream_id()).await.len() == 2 }
    })
    .await;

    // The deposed token moves nothing, forward or back.
    let now = second.status("carts").await.unwrap().position;
    let forward = checkpoint::try_advance(&db1, "carts", deposed_epoch, now, Position(now.0 + 1_000_000)).await;
    assert!(matches!(forward, Err(ProjectionError::Deposed(_))), "{forward:?}");
    let back = checkpoint::try_advance(&db1, "carts", deposed_epoch, now, Position::START).await;
    assert!(matches!(back, Err(ProjectionError::Deposed(_))), "{back:?}");
    // The live leader may have moved on meanwhile, but only along the feed.
    let after = second.status("carts").await.unwrap();
    assert!(after.position >= now && after.position <= after.head_position, "{after:?}");
    // The current token may (the fence is the token, not the caller).
    let current = checkpoint::epoch(&db2, "carts").await.unwrap();
    assert!(current > deposed_epoch);

    // w1 stands by now; shutting w2 down hands everything back to w1.
    second.shutdown().await;
    for name in ["carts", "inventory"] {
        let first = first.clone();
        eventually(&format!("w1 leads {name} again"), Duration::from_secs(10), move || {
            let first = first.clone();
            async move {
                leader_of(&first, name).await.as_deref() == Some("w1")
                    && first.status(name).await.is_ok_and(|s| s.state != projections::ProjectionState::Stopped)
            }
        })
        .await;
    }
    let later = create_cart(&db1, "bob").await;
    let position = add(&db1, later, "tea", 1, 100).await;
    first.wait_for("carts", position, WAIT).await.unwrap();
    first.wait_for("products", position, WAIT).await.unwrap();
    first.shutdown().await;
}

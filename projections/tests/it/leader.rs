//! Leases on Postgres: two runners on one database, one leads each worker; a standby takes
//! over within seconds when the leader stops renewing (its connections still open, as a
//! frozen process's are), the deposed leader's token moves the checkpoint neither forward
//! nor back, a leader whose lease was taken stands by and writes nothing, and a lease given
//! back at shutdown is taken at once. A process keeps its leases on one connection. The
//! SIGSTOP/SIGCONT of a real process is in `tests/tests/nodes`.

use std::time::{Duration, Instant};

use crate::common::*;
use projections::checkpoint;
use projections::leader::LeaseTimings;
use projections::{ProjectionError, ProjectionState, Projections, ProjectionsConfig};
use store::{Database, Position};

const ALL: [&str; 7] = ["carts", "orders", "products", "notifications", "analytics", "fulfilment", "inventory"];

fn config(worker: &str, lease: Duration) -> ProjectionsConfig {
    ProjectionsConfig {
        worker_name: worker.into(),
        run_reactors: true,
        lease: LeaseTimings {
            duration: lease,
            heartbeat: Duration::from_millis(200),
        },
        ..ProjectionsConfig::default()
    }
}

async fn leader_of(projections: &Projections, name: &str) -> Option<String> {
    projections.status(name).await.ok().and_then(|s| s.leader)
}

async fn leads_all(projections: &Projections, worker: &str, within: Duration) {
    for name in ALL {
        let projections = projections.clone();
        eventually(&format!("{worker} leads {name}"), within, move || {
            let projections = projections.clone();
            async move {
                leader_of(&projections, name).await.as_deref() == Some(worker)
                    && projections.status(name).await.is_ok_and(|s| s.state != ProjectionState::Stopped)
            }
        })
        .await;
    }
}

async fn connections_named(db: &Database, pattern: &str) -> i64 {
    let Database::Postgres(store) = db else { unreachable!() };
    sqlx::query_scalar("select count(*) from pg_stat_activity where datname = current_database() and application_name like $1")
        .bind(pattern)
        .fetch_one(store.pool())
        .await
        .expect("count connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_takes_over_a_leader_that_stops_renewing_and_the_deposed_token_is_fenced() {
    let pg = store::testing::postgres().await;
    let db1 = store::open(&pg.url).await.unwrap();
    let db2 = store::open(&pg.url).await.unwrap();
    let first = Projections::start(db1.clone(), config("w1", Duration::from_secs(1)), live(&db1))
        .await
        .unwrap();
    leads_all(&first, "w1", WAIT).await;
    // A long lease for w2: handing over at its shutdown must not wait for it to expire.
    let second = Projections::start(db2.clone(), config("w2", Duration::from_secs(60)), live(&db2))
        .await
        .unwrap();

    register(&db1, "tea", 100, 10).await;
    let cart = create_cart(&db1, "alice").await;
    let position = add(&db1, cart, "tea", 1, 100).await;
    second.wait_for("carts", position, WAIT).await.unwrap();
    assert_eq!(
        leader_of(&second, "carts").await.as_deref(),
        Some("w1"),
        "the standby took over a live leader"
    );
    assert_eq!(connections_named(&db1, "cs-lease:w1").await, 1, "one lease connection per process");
    assert_eq!(connections_named(&db1, "cs-lock:%").await, 0, "no lock connection per consumer");
    let deposed_epoch = checkpoint::epoch(&db1, "carts").await.unwrap();

    // w1 stops renewing (its tasks end; its database connections stay open, as a frozen
    // process's do): its leases expire and w2 takes them.
    drop(first);
    let stopped = Instant::now();
    leads_all(&second, "w2", Duration::from_secs(10)).await;
    let took = stopped.elapsed();
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
    let after = second.status("carts").await.unwrap();
    assert!(after.position >= now && after.position <= after.head_position, "{after:?}");
    assert!(checkpoint::epoch(&db2, "carts").await.unwrap() > deposed_epoch);

    // w2 gives its leases back at shutdown: a new process leads at once, long before w2's
    // 60 s leases would have expired.
    second.shutdown().await;
    let db3 = store::open(&pg.url).await.unwrap();
    let handed = Instant::now();
    let third = Projections::start(db3.clone(), config("w3", Duration::from_secs(60)), live(&db3))
        .await
        .unwrap();
    leads_all(&third, "w3", Duration::from_secs(10)).await;
    assert!(handed.elapsed() < Duration::from_secs(5), "handover took {:?}", handed.elapsed());
    let later = create_cart(&db3, "bob").await;
    let position = add(&db3, later, "tea", 1, 100).await;
    third.wait_for("carts", position, WAIT).await.unwrap();
    third.wait_for("products", position, WAIT).await.unwrap();
    third.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_lease_was_taken_stands_by_and_writes_nothing() {
    let pg = store::testing::postgres().await;
    let db = store::open(&pg.url).await.unwrap();
    let worker = Projections::start(db.clone(), config("w1", Duration::from_secs(60)), live(&db))
        .await
        .unwrap();
    leads_all(&worker, "w1", WAIT).await;
    register(&db, "tea", 100, 10).await;
    let cart = create_cart(&db, "alice").await;
    let before = add(&db, cart, "tea", 1, 100).await;
    worker.wait_for("carts", before, WAIT).await.unwrap();

    // Another process takes the carts lease, as a standby does once it expired, and then
    // does nothing (as if it froze at once).
    sql(
        &db,
        "update projection_checkpoints set leader = 'thief', leader_epoch = leader_epoch + 1, \
         lease_expires_at = now() + interval '1 hour' where name = 'carts'",
    )
    .await;
    let stolen = checkpoint::epoch(&db, "carts").await.unwrap();
    let stolen_at = worker.status("carts").await.unwrap();
    let position = add(&db, cart, "tea", 2, 100).await;
    // The other workers go on; w1 wrote nothing for carts: not its token, not a position.
    worker.wait_for("analytics", position, WAIT).await.unwrap();
    // Several heartbeats and poll intervals: w1 would have applied the event by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = worker.status("carts").await.unwrap();
    assert_eq!(row.leader.as_deref(), Some("thief"));
    assert_eq!(checkpoint::epoch(&db, "carts").await.unwrap(), stolen);
    assert_eq!(row.updated_at, stolen_at.updated_at, "the deposed leader wrote the carts row: {row:?}");
    assert_eq!(worker.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 1);

    // The lease ends (given back, or expired): w1 takes it with a new token and catches up.
    sql(&db, "update projection_checkpoints set lease_expires_at = null where name = 'carts'").await;
    worker.wait_for("carts", position, WAIT).await.unwrap();
    assert_eq!(leader_of(&worker, "carts").await.as_deref(), Some("w1"));
    assert!(checkpoint::epoch(&db, "carts").await.unwrap() > stolen);
    assert_eq!(worker.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 3);
    worker.shutdown().await;
}

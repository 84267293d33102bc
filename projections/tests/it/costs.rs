//! What the workers cost the database, counted by the runner itself
//! ([`Projections::counters`]): with every consumer running (the NATS publisher too when
//! NATS_URL is set), one cart command costs one transaction for each consumer its event
//! concerns and nothing at all for the others, a burst of commits costs an unconcerned
//! worker nothing, and idle workers write nothing.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use projections::{Projections, ProjectionsConfig, WorkerCounters};
use store::{Database, LiveFeed, Position};
use uuid::Uuid;

/// Every consumer; the publisher only when NATS_URL is set.
fn config(poll_interval: Duration) -> ProjectionsConfig {
    let tag = Uuid::now_v7().simple().to_string();
    ProjectionsConfig {
        run_reactors: true,
        nats_url: std::env::var("NATS_URL").ok(),
        nats_stream: format!("CS_COSTS_{tag}"),
        nats_subject_prefix: format!("cscosts{tag}"),
        worker_name: "costs".into(),
        poll_interval,
        ..ProjectionsConfig::default()
    }
}

const CART_CONSUMERS: [&str; 2] = ["carts", "analytics"];
const OTHERS: [&str; 5] = ["orders", "products", "notifications", "fulfilment", "inventory"];

/// Starts every consumer and waits until each has applied everything and follows the live
/// feed.
async fn start_following(db: &Database, config: ProjectionsConfig) -> (Projections, LiveFeed, Vec<&'static str>) {
    let mut concerned = CART_CONSUMERS.to_vec();
    if config.nats_url.is_some() {
        concerned.push(projections::runner::PUBLISHER);
    }
    let live = LiveFeed::start(db.store());
    let projections = Projections::start(db.clone(), config, live.clone()).await.expect("start");
    // Caught up with everything there is (a worker may also catch up through the feed)...
    let head = db.store().head_position().await.expect("head");
    wait_all(&projections, &concerned, head).await;
    // ...and subscribed to the live feed.
    let workers = concerned.len() + OTHERS.len();
    eventually("every worker follows the live feed", WAIT, || {
        let live = live.clone();
        async move { live.subscriber_count() == workers }
    })
    .await;
    (projections, live, concerned)
}

/// The counters' growth since `before`, by worker.
fn since(projections: &Projections, before: &HashMap<String, WorkerCounters>) -> HashMap<String, WorkerCounters> {
    projections
        .counters()
        .into_iter()
        .map(|(name, now)| {
            let was = before.get(&name).copied().unwrap_or_default();
            let delta = WorkerCounters {
                writes: now.writes - was.writes,
                reads: now.reads - was.reads,
            };
            (name, delta)
        })
        .collect()
}

fn of(costs: &HashMap<String, WorkerCounters>, name: &str) -> WorkerCounters {
    costs.get(name).copied().unwrap_or_default()
}

async fn wait_all(projections: &Projections, names: &[&str], position: Position) {
    for name in names.iter().chain(&OTHERS) {
        projections.wait_for(name, position, WAIT).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

async fn a_cart_command_costs_one_transaction_per_consumer_it_concerns(db: Database) {
    register(&db, "tea", 100, 10).await;
    let cart = create_cart(&db, "alice").await;
    // No re-read of the checkpoint rows during the counts (they come every few poll intervals).
    let (projections, _live, concerned) = start_following(&db, config(Duration::from_secs(600))).await;

    // One addItemToCart: one event in one cart stream.
    let before = projections.counters();
    let position = add(&db, cart, "tea", 1, 100).await;
    wait_all(&projections, &concerned, position).await;
    let costs = since(&projections, &before);
    for name in &concerned {
        assert_eq!(of(&costs, name), WorkerCounters { writes: 1, reads: 0 }, "{name}: {costs:?}");
    }
    for name in OTHERS {
        assert_eq!(of(&costs, name), WorkerCounters::default(), "{name}: {costs:?}");
    }
    assert_eq!(projections.read().cart(*cart.as_uuid()).await.unwrap().unwrap().item_count, 1);

    // A burst of commits to carts: nothing for the workers that do not read carts, at most
    // one transaction per commit (fewer when they come faster than a batch is written)
    // for those that do.
    let before = projections.counters();
    let commits = 40u64;
    let mut last = position;
    for i in 0..commits {
        last = add(&db, cart, "tea", 1 + (i % 3) as i64, 100).await;
    }
    wait_all(&projections, &concerned, last).await;
    let costs = since(&projections, &before);
    for name in &concerned {
        let cost = of(&costs, name);
        assert!((1..=commits).contains(&cost.writes) && cost.reads == 0, "{name}: {costs:?}");
        println!("{name}: {} transactions for {commits} commits", cost.writes);
    }
    for name in OTHERS {
        assert_eq!(of(&costs, name), WorkerCounters::default(), "{name}: {costs:?}");
    }
    // Every other consumer has still "applied" the position: read-your-writes holds for all.
    for name in OTHERS {
        assert!(projections.status(name).await.unwrap().position >= last, "{name}");
    }
    projections.shutdown().await;
}

/// Idle workers (default poll interval: they re-read their checkpoint rows now and then)
/// write nothing.
async fn idle_workers_write_nothing(db: Database) {
    register(&db, "tea", 100, 10).await;
    let (projections, _live, _) = start_following(&db, config(ProjectionsConfig::default().poll_interval)).await;
    let before = projections.counters();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let costs = since(&projections, &before);
    assert!(costs.values().all(|c| c.writes == 0), "{costs:?}");
    projections.shutdown().await;
}

backends!(a_cart_command_costs_one_transaction_per_consumer_it_concerns, idle_workers_write_nothing,);

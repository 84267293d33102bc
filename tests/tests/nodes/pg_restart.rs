//! PostgreSQL restarted under load (a private server of this test's own, never the shared
//! one): every node recovers without being restarted, writes are acknowledged again, a
//! subscriber that subscribes again with `afterVersion` ends up with every version once and
//! in order, no acknowledged write is lost, and the read side catches up.

use std::time::{Duration, Instant};

use api::auth::Role;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;

use crate::client::{self, Client};
use crate::harness::Cluster;

const CART_CHANGED: &str = "subscription($id: UUID!, $after: Int) { cartChanged(cartId: $id, afterVersion: $after) { event { version } } }";

/// What the writer saw: (version acknowledged or failure, when).
type Outcome = (Result<i64, String>, Instant);

async fn write(client: Client, url: String, cart: String, mut stop: watch::Receiver<bool>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut i = 0;
    while !*stop.borrow() {
        i += 1;
        let input = json!({"input": {"cartId": cart, "sku": client::SKUS[i % 3], "quantity": 1}});
        let outcome = client
            .gql(&url, client::ADD_ITEM, input)
            .await
            .map(|data| data["addItemToCart"]["cart"]["version"].as_i64().unwrap_or_default());
        outcomes.push((outcome, Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => {}
        }
    }
    outcomes
}

/// Reads the cart's changes on `ws_url` until it has `until` (sent once known), subscribing
/// again after the last version seen whenever a subscription ends or fails.
async fn follow(ws_url: String, token: String, cart: String, mut until: watch::Receiver<i64>) -> (Vec<i64>, u32) {
    let mut seen: Vec<i64> = Vec::new();
    let mut resubscribed = 0;
    loop {
        let after = seen.last().copied().unwrap_or(0);
        let mut sub = client::subscribe(&ws_url, &token, CART_CHANGED, json!({"id": cart, "after": after})).await;
        loop {
            if *until.borrow() > 0 && seen.last().copied() >= Some(*until.borrow()) {
                return (seen, resubscribed);
            }
            let next = tokio::select! {
                next = sub.stream.next() => next,
                _ = until.changed() => continue,
            };
            match next {
                Some(Ok(message)) => match message["data"]["cartChanged"]["event"]["version"].as_i64() {
                    Some(version) => seen.push(version),
                    None => break,
                },
                Some(Err(_)) | None => break,
            }
        }
        resubscribed += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_recovers_from_a_postgres_restart_without_losing_a_write_or_a_change() {
    let pg = tokio::task::spawn_blocking(store::testing::PrivatePostgres::start)
        .await
        .expect("start")
        .expect("a private PostgreSQL");
    let mut cluster = Cluster::on(pg.url.clone()).await.with_nodes(2, 1, Vec::new()).await;
    let api = cluster.api_nodes();
    let (a, b) = (cluster.nodes[api[0]].base_url.clone(), cluster.nodes[api[1]].ws_url.clone());
    let admin = Client::new(client::token("ops", Role::Admin));
    client::register_products(&admin, &a).await;
    let token = client::token("alice", Role::Customer);
    let alice = Client::new(token.clone());
    let cart = alice.create_cart(&a).await;

    let (until, following) = watch::channel(0);
    let reader = tokio::spawn(follow(b, token, cart.clone(), following));
    let (stop, stopping) = watch::channel(false);
    let writer = tokio::spawn(write(alice.clone(), a.clone(), cart.clone(), stopping));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pg = std::sync::Arc::new(pg);
    let stopping_pg = pg.clone();
    tokio::task::spawn_blocking(move || stopping_pg.stop())
        .await
        .expect("stop")
        .expect("PostgreSQL stops");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starting_pg = pg.clone();
    tokio::task::spawn_blocking(move || starting_pg.start_again())
        .await
        .expect("start")
        .expect("PostgreSQL starts again");
    let up = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _ = stop.send(true);
    let outcomes = writer.await.expect("the writer");

    let first_ok = outcomes
        .iter()
        .find(|(outcome, at)| *at > up && outcome.is_ok())
        .map(|(_, at)| at.duration_since(up))
        .expect("writes are acknowledged again after the restart");
    let failures_after = outcomes.iter().filter(|(outcome, at)| outcome.is_err() && *at > up + first_ok).count();
    assert_eq!(failures_after, 0, "writes failed after the first one succeeded again");
    let acknowledged: Vec<i64> = outcomes.iter().filter_map(|(outcome, _)| outcome.as_ref().ok().copied()).collect();
    let failed = outcomes.len() - acknowledged.len();
    // A database restart is an expected situation, not a bug: UNAVAILABLE (or TIMEOUT), never
    // INTERNAL_SERVER_ERROR.
    let internal: Vec<&String> = outcomes
        .iter()
        .filter_map(|(outcome, _)| outcome.as_ref().err())
        .filter(|e| e.contains("INTERNAL_SERVER_ERROR"))
        .collect();
    assert!(
        internal.is_empty(),
        "{} writes failed as INTERNAL_SERVER_ERROR: {:?}",
        internal.len(),
        internal.first()
    );
    let codes: std::collections::BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|(outcome, _)| outcome.as_ref().err())
        .map(|e| {
            ["UNAVAILABLE", "TIMEOUT", "transport"]
                .into_iter()
                .find(|c| e.contains(c))
                .unwrap_or("other")
        })
        .collect();

    let stored: Vec<i64> = sqlx::query_scalar("select version from events where stream_id = $1 order by version")
        .bind(format!("cart-{cart}"))
        .fetch_all(&sqlx::PgPool::connect(&pg.url).await.expect("connect after the restart"))
        .await
        .expect("the cart's events");
    assert!(acknowledged.iter().all(|v| stored.contains(v)), "an acknowledged write is missing");
    let last = *stored.last().expect("events");
    let _ = until.send(last);
    let (seen, resubscribed) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the subscriber catches up")
        .expect("the subscriber");
    assert_eq!(seen, (1..=last).collect::<Vec<_>>(), "every version once, in order");

    client::wait_until_caught_up(&admin, &a, Duration::from_secs(60)).await;
    let read = alice
        .must(&a, "query($id: UUID!) { cart(id: $id) { version } }", json!({"id": cart}))
        .await;
    assert_eq!(read["cart"]["version"].as_i64(), Some(last));
    for node in &mut cluster.nodes {
        assert!(node.exited().is_none(), "{} died with the database", node.label);
    }
    println!(
        "PostgreSQL down 3 s: writes acknowledged again {first_ok:?} after it was back; {} acknowledged, {failed} failed while it was down ({codes:?}), none lost; the subscriber subscribed again {resubscribed} times and has all {last} versions in order",
        acknowledged.len()
    );
}

//! Live updates across nodes: a client subscribed (graphql-transport-ws) on API node B sees
//! every change made through API node A, every version once and in order; the time from
//! sending each mutation to A until B's subscriber has it is printed (p50/p99).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use api::auth::Role;
use futures::StreamExt;
use serde_json::json;

use crate::client::{self, Client};
use crate::harness::Cluster;

const CHANGES: i64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_on_one_node_sees_every_change_made_through_another_in_order() {
    let cluster = Cluster::start(2, 1, Vec::new()).await;
    let api = cluster.api_nodes();
    let (a, b) = (&cluster.nodes[api[0]], &cluster.nodes[api[1]]);
    let admin = Client::new(client::token("ops", Role::Admin));
    client::register_products(&admin, &a.base_url).await;
    let token = client::token("alice", Role::Customer);
    let alice = Client::new(token.clone());
    let cart = alice.create_cart(&a.base_url).await;

    let mut subscription = client::subscribe(
        &b.ws_url,
        &token,
        "subscription($id: UUID!) { cartChanged(cartId: $id) { event { version } cart { version itemCount } } }",
        json!({"id": cart}),
    )
    .await;
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < (CHANGES + 1) as usize {
            let next = tokio::time::timeout(Duration::from_secs(30), subscription.stream.next()).await;
            let message = next
                .expect("a change within 30 s")
                .expect("the subscription is open")
                .expect("a well-formed message");
            let version = message["data"]["cartChanged"]["event"]["version"].as_i64().expect("a version");
            seen.push((version, Instant::now()));
        }
        seen
    });

    // Writes through A at about 50 commands/s.
    let mut sent = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..CHANGES {
        tick.tick().await;
        let started = Instant::now();
        let sku = client::SKUS[(i % 3) as usize];
        let data = alice
            .must(
                &a.base_url,
                client::ADD_ITEM,
                json!({"input": {"cartId": cart, "sku": sku, "quantity": 1}}),
            )
            .await;
        let version = data["addItemToCart"]["cart"]["version"].as_i64().expect("a version");
        sent.insert(version, started);
    }

    let seen = reader.await.expect("the subscriber");
    let versions: Vec<i64> = seen.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=CHANGES + 1).collect::<Vec<_>>(), "every version once, in order");
    let mut latencies: Vec<Duration> = seen
        .iter()
        .filter_map(|(version, at)| sent.get(version).map(|started| at.saturating_duration_since(*started)))
        .collect();
    assert_eq!(latencies.len(), CHANGES as usize);
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!("cross-node live updates: {CHANGES}/{CHANGES} in order; mutation sent to A -> change at B's subscriber: p50 {p50:?}, p99 {p99:?}");
}

//! kill -9 of an API node under load: the clients of the other node see no failure, and no
//! write that either node acknowledged is lost.

use std::time::Duration;

use api::auth::Role;
use serde_json::json;
use tokio::sync::watch;

use crate::client::{self, Client};
use crate::harness::Cluster;

/// Writes to one cart of its own through `url` every 20 ms until stopped; returns the
/// cart, the versions acknowledged, and the failures.
async fn write(client: Client, url: String, mut stop: watch::Receiver<bool>) -> (String, Vec<i64>, Vec<String>) {
    let cart = client.create_cart(&url).await;
    let (mut acknowledged, mut failed) = (vec![1], Vec::new());
    let mut i = 0;
    while !*stop.borrow() {
        i += 1;
        let input = json!({"input": {"cartId": cart, "sku": client::SKUS[i % 3], "quantity": 1}});
        match client.gql(&url, client::ADD_ITEM, input).await {
            Ok(data) => acknowledged.push(data["addItemToCart"]["cart"]["version"].as_i64().expect("a version")),
            Err(e) => failed.push(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.changed() => {}
        }
    }
    (cart, acknowledged, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_api_node_affects_no_client_of_the_other_and_loses_no_acknowledged_write() {
    let cluster = Cluster::start(2, 1, Vec::new()).await;
    let api = cluster.api_nodes();
    let (killed, surviving) = (api[0], api[1]);
    let admin = Client::new(client::token("ops", Role::Admin));
    client::register_products(&admin, &cluster.nodes[surviving].base_url).await;

    let (stop, stopping) = watch::channel(false);
    let writers: Vec<_> = [killed, surviving]
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            let client = Client::new(client::token(&format!("shopper{i}"), Role::Customer));
            tokio::spawn(write(client, cluster.nodes[node].base_url.clone(), stopping.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[killed].signal("KILL");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(true);
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await.expect("a writer"));
    }

    let (_, _, killed_failures) = &results[0];
    assert!(!killed_failures.is_empty(), "the killed node still answered");
    let (_, surviving_acks, surviving_failures) = &results[1];
    assert!(surviving_failures.is_empty(), "the other node's client failed: {surviving_failures:?}");
    assert!(
        surviving_acks.len() > 50,
        "the other node's client wrote too little: {}",
        surviving_acks.len()
    );
    for (cart, acknowledged, _) in &results {
        let stored: Vec<i64> = sqlx::query_scalar("select version from events where stream_id = $1 order by version")
            .bind(format!("cart-{cart}"))
            .fetch_all(&cluster.db)
            .await
            .expect("the cart's events");
        // Every acknowledged version is stored; the killed node may have stored one more
        // whose answer it never sent.
        assert!(
            stored.starts_with(acknowledged),
            "{cart}: an acknowledged write is missing: {stored:?} against {acknowledged:?}"
        );
        assert!(stored.len() <= acknowledged.len() + 1, "{cart}: {stored:?} against {acknowledged:?}");
    }
    println!(
        "kill -9 of an API node: {} writes acknowledged by it before, {} by the other node throughout, none lost",
        results[0].1.len() - 1,
        surviving_acks.len() - 1
    );
}

//! Rate limits across nodes: two servers in one process on one database, as two nodes
//! behind a load balancer would be. With a shared Redis a caller's allowance holds across
//! both; without one each node has its own; with Redis unreachable the nodes limit locally
//! (and say so in /metrics). Each test uses a namespace of its own and deletes its keys.

use std::time::{Duration, Instant};

use api::auth::Role;
use serde_json::json;

use crate::support::{error_codes, spawn_server_with, test_config, TestServer};

/// Steady rate 1/s: the few hundred ms the requests take refill nothing.
const PER_SECOND: u32 = 1;
const BURST: u32 = 6;
const EXTRA: u32 = 4;

fn config(database_url: &str, redis: Option<&str>, namespace: &str) -> api::Config {
    let mut config = test_config(database_url.to_owned());
    config.limits.rate_limit_per_second = PER_SECOND;
    config.limits.rate_limit_burst = BURST;
    config.exposure.rate_limit_redis_url = redis.map(str::to_owned);
    config.exposure.rate_limit_namespace = namespace.to_owned();
    config
}

/// Two nodes on one database.
async fn two_nodes(redis: Option<&str>, namespace: &str) -> (TestServer, TestServer) {
    let database = store::testing::postgres().await.url;
    let a = spawn_server_with(config(&database, redis, namespace)).await;
    let b = spawn_server_with(config(&database, redis, namespace)).await;
    (a, b)
}

/// `BURST + EXTRA` requests of one caller, alternating between the nodes: how many were
/// refused, after checking that each refusal is a proper 429.
async fn refused_of_alternating(a: &TestServer, b: &TestServer) -> u32 {
    let token = a.token("alice", Role::Customer);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut refused = 0;
    for i in 0..BURST + EXTRA {
        let node = if i % 2 == 0 { a } else { b };
        let response = client
            .post(format!("{}/graphql", node.base_url))
            .bearer_auth(&token)
            .json(&json!({"query": "{ me { id } }"}))
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
        let body: serde_json::Value = response.json().await.expect("JSON");
        if status == 429 {
            refused += 1;
            assert_eq!(error_codes(&body), ["RATE_LIMITED"], "{body}");
            assert!(
                retry_after.as_deref().is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
                "{retry_after:?}"
            );
        } else {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the requests took {:?}: the steady rate refilled the burst, counts are off",
        started.elapsed()
    );
    refused
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(store::testing::redis_url()).expect("a Redis URL");
    client.get_multiplexed_async_connection().await.expect("connect to the test Redis")
}

/// The namespace's keys with their time to live (ms), then deleted.
async fn take_keys(namespace: &str) -> Vec<(String, i64)> {
    let mut redis = redis_connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    let mut found = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut redis).await.expect("PTTL");
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.expect("DEL");
        found.push((key, ttl));
    }
    found
}

#[tokio::test]
async fn a_shared_store_holds_a_callers_allowance_across_nodes() {
    let namespace = format!("cstest-{}", uuid::Uuid::new_v4().simple());
    let redis = store::testing::redis_url();
    let (a, b) = two_nodes(Some(&redis), &namespace).await;
    let refused = refused_of_alternating(&a, &b).await;
    // Another caller has an allowance of their own, also shared.
    let bob = a.token("bob", Role::Customer);
    let (status, body) = crate::support::post_graphql(&b, Some(&bob), "{ me { id } }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    a.stop().await;
    b.stop().await;

    let keys = take_keys(&namespace).await;
    assert_eq!(refused, EXTRA, "burst {BURST} across both nodes: exactly the {EXTRA} over it are refused");
    let mut names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [format!("{namespace}:ratelimit:sub:alice"), format!("{namespace}:ratelimit:sub:bob")],
        "one key per caller, under the namespace"
    );
    for (key, ttl) in &keys {
        // Alice's burst is full again after BURST/PER_SECOND seconds: her key lives that long at most.
        assert!(*ttl > 0 && *ttl <= i64::from(BURST / PER_SECOND) * 1000 + 1, "{key} expires: {ttl} ms");
    }
    assert!(take_keys(&namespace).await.is_empty(), "the test left keys behind");
}

#[tokio::test]
async fn without_a_shared_store_each_node_limits_on_its_own() {
    let (a, b) = two_nodes(None, "unused").await;
    assert_eq!(
        refused_of_alternating(&a, &b).await,
        0,
        "each node grants its own burst of {BURST}: {} requests over two nodes all pass",
        BURST + EXTRA
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_unreachable_store_falls_back_to_local_limits() {
    // A port nothing listens on.
    let port = store::testing::free_port();
    let namespace = format!("cstest-{}", uuid::Uuid::new_v4().simple());
    let (a, b) = two_nodes(Some(&format!("redis://127.0.0.1:{port}")), &namespace).await;
    // Per node: BURST/2 + EXTRA/2 = 5 requests each, within each node's own burst of 6.
    assert_eq!(refused_of_alternating(&a, &b).await, 0, "the nodes still answer, limited each on its own");
    // Over one node's own burst, the local limiter refuses.
    let token = a.token("carol", Role::Customer);
    let mut statuses = Vec::new();
    for _ in 0..BURST + 1 {
        statuses.push(crate::support::post_graphql(&a, Some(&token), "{ me { id } }", json!({})).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    let metrics = crate::support::metrics(&a).await;
    let fallbacks = metrics
        .lines()
        .find_map(|line| line.strip_prefix("cartsource_rate_limit_store_fallbacks_total "))
        .and_then(|n| n.trim().parse::<f64>().ok());
    assert!(fallbacks.is_some_and(|n| n >= 1.0), "fallbacks are counted: {fallbacks:?}");
    a.stop().await;
    b.stop().await;
}

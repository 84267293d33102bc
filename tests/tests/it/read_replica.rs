//! `--read-database-url`: read-model queries go to a real streaming replica (a private
//! primary and its `pg_basebackup -R` standby, started from the local PostgreSQL binaries),
//! while commands and subscriptions stay on the primary. Pausing the standby's replay proves
//! where the reads go: a read with `minPosition` of a newer write waits and ends with
//! CONSISTENCY_TIMEOUT, a read without it shows the old state, and everything else goes on.

use std::time::{Duration, Instant};

use api::auth::Role;
use serde_json::{json, Value};

use crate::support::*;

const CART_AT: &str = "query($id: UUID!, $p: Position) { cart(id: $id, minPosition: $p) { version itemCount } }";
const CART_CHANGED: &str = "subscription($id: UUID!, $after: Int) { cartChanged(cartId: $id, afterVersion: $after) { event { version } } }";

async fn cart_at(server: &TestServer, token: &str, cart: &str, position: Option<&str>) -> (u16, Value) {
    post_graphql(server, Some(token), CART_AT, json!({"id": cart, "p": position})).await
}

async fn readyz(server: &TestServer) -> (u16, Value) {
    let response = reqwest::get(format!("{}/readyz", server.base_url)).await.expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON readiness body"))
}

async fn on_replica(url: &str, statement: &str) {
    let pool = sqlx::PgPool::connect(url).await.expect("connect to the replica");
    sqlx::query(statement).execute(&pool).await.expect(statement);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_go_to_the_replica_and_min_position_waits_until_it_has_replayed_the_write() {
    let (primary, replica) = tokio::task::spawn_blocking(|| {
        let primary = store::testing::PrivatePostgres::start()?;
        let replica = primary.replica()?;
        Ok::<_, String>((primary, replica))
    })
    .await
    .expect("start")
    .expect("a private primary and its streaming replica");
    let mut config = test_config(primary.url.clone());
    config.read_replica.read_database_url = Some(replica.url.clone());
    config.read_replica.read_database_pool_size = Some(3);
    let server = spawn_server_with(config).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "tea", "Tea", "4.50", 100).await;
    let cart = create_cart(&server, &alice).await;

    // Read-your-writes through the replica.
    let added = add_item(&server, &alice, &cart, "tea", 1).await;
    let first = added["position"].as_str().expect("a position").to_owned();
    let (_, body) = cart_at(&server, &alice, &cart, Some(&first)).await;
    assert_eq!(body["data"]["cart"], json!({"version": 2, "itemCount": 1}), "{body}");
    let (status, ready) = readyz(&server).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["replica"]["in_recovery"], json!(true), "{ready}");
    assert_eq!(ready["replica"]["replay_paused"], json!(false), "{ready}");
    let carts = ready["replica"]["projections"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "carts"))
        .unwrap_or_else(|| panic!("the replica's carts position in {ready}"));
    assert!(carts["position"].as_u64() >= first.parse::<u64>().ok(), "{ready}");

    // The standby stops replaying: commands and subscriptions (primary) go on ...
    let mut changes = subscribe(&server, &alice, CART_CHANGED, json!({"id": cart, "after": 2})).await;
    on_replica(&replica.url, "select pg_wal_replay_pause()").await;
    let added = add_item(&server, &alice, &cart, "tea", 2).await;
    assert_eq!(added["cart"]["version"], json!(3), "the command is answered by the primary: {added}");
    let second = added["position"].as_str().expect("a position").to_owned();
    let change = changes.next(Duration::from_secs(10)).await;
    assert_eq!(change["data"]["cartChanged"]["event"]["version"], json!(3), "{change}");
    let (_, ready) = readyz(&server).await;
    assert_eq!(ready["replica"]["replay_paused"], json!(true), "{ready}");

    // ... while the read model, read on the replica, stands still: a plain read shows the
    // state before the write, and a read that must see it times out.
    let (_, body) = cart_at(&server, &alice, &cart, None).await;
    assert_eq!(
        body["data"]["cart"],
        json!({"version": 2, "itemCount": 1}),
        "reads come from the paused replica: {body}"
    );
    let started = Instant::now();
    let (_, body) = cart_at(&server, &alice, &cart, Some(&second)).await;
    assert_eq!(error_codes(&body), ["CONSISTENCY_TIMEOUT"], "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "it waited for the replica: {:?}",
        started.elapsed()
    );

    // A read that is waiting when replay resumes answers the new state.
    let started = Instant::now();
    let resume = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        on_replica(&replica.url, "select pg_wal_replay_resume()").await;
    };
    let ((_, body), ()) = tokio::join!(cart_at(&server, &alice, &cart, Some(&second)), resume);
    assert_eq!(body["data"]["cart"], json!({"version": 3, "itemCount": 3}), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(500), "it answered only after replay resumed");
    server.stop().await;
}

#[tokio::test]
async fn without_a_replica_readiness_names_none() {
    let server = spawn_server(store::testing::postgres().await.url).await;
    let (status, ready) = readyz(&server).await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.get("replica").is_none(), "{ready}");
}

#[tokio::test]
async fn a_replica_for_the_sqlite_store_is_refused_at_start() {
    let mut config = test_config(store::testing::sqlite());
    config.read_replica.read_database_url = Some("postgres://postgres@127.0.0.1:5432/postgres".into());
    let error = api::Application::build(&config)
        .await
        .err()
        .expect("SQLite with a read replica must not start");
    assert!(matches!(error, api::server::StartError::ReplicaWithoutPostgres), "{error}");
    assert!(error.to_string().contains("READ_DATABASE_URL"), "{error}");
}

#[tokio::test]
async fn an_unreachable_replica_stops_the_start_naming_read_database_url() {
    // Nothing listens on a port that was free when asked.
    let port = store::testing::free_port();
    let mut config = test_config(store::testing::postgres().await.url);
    config.read_replica.read_database_url = Some(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
    let error = api::Application::build(&config)
        .await
        .err()
        .expect("an unreachable replica must stop the start");
    assert!(matches!(error, api::server::StartError::ReadReplica(_)), "{error}");
    let said = error.to_string();
    for word in [format!("127.0.0.1:{port}").as_str(), "connection refused", "READ_DATABASE_URL"] {
        assert!(said.contains(word), "{word:?} in {said}");
    }
}

//! Archiving over GraphQL (#15), on both backends: only an admin archives, only carts; an
//! archived cart answers ARCHIVED (with the stream and its version) to every read and every
//! command, never INTERNAL_SERVER_ERROR; other carts are untouched.

use crate::support::{add_item, create_cart, gql_data, gql_error, gql_error_code, register_product, spawn_server};
use api::auth::Role;
use serde_json::json;

const ARCHIVE: &str = "mutation($s: String!) { archiveStream(streamId: $s) { streamId version eventsMoved alreadyArchived position } }";

async fn archived_carts_answer_archived(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 1000).await;
    let cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart, "apple", 2).await;
    let other = create_cart(&server, &alice).await;
    let stream = format!("cart-{cart}");

    assert_eq!(gql_error_code(&server, Some(&alice), ARCHIVE, json!({"s": stream})).await, "FORBIDDEN");
    assert_eq!(
        gql_error_code(&server, Some(&admin), ARCHIVE, json!({"s": "product-apple"})).await,
        "BAD_USER_INPUT"
    );
    let nobody = format!("cart-{}", uuid::Uuid::now_v7());
    assert_eq!(gql_error_code(&server, Some(&admin), ARCHIVE, json!({"s": nobody})).await, "NOT_FOUND");

    let archived = gql_data(&server, Some(&admin), ARCHIVE, json!({"s": stream})).await["archiveStream"].clone();
    assert_eq!(
        (
            &archived["streamId"],
            &archived["version"],
            &archived["eventsMoved"],
            &archived["alreadyArchived"]
        ),
        (&json!(stream), &json!(2), &json!(2), &json!(false))
    );
    let position = archived["position"].as_str().expect("a position").to_owned();
    let again = gql_data(&server, Some(&admin), ARCHIVE, json!({"s": stream})).await["archiveStream"].clone();
    assert_eq!(
        (&again["alreadyArchived"], &again["eventsMoved"], &again["position"]),
        (&json!(true), &json!(0), &json!(null))
    );

    // Reads: the read model (once it applied the archive), time travel, history, the admin's stream view.
    let expect_archived = |error: serde_json::Value| {
        assert_eq!(
            error["extensions"],
            json!({"code": "ARCHIVED", "streamId": stream, "archivedVersion": 2}),
            "{error}"
        );
    };
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            "query($id: UUID!, $p: Position) { cart(id: $id, minPosition: $p) { id } }",
            json!({"id": cart, "p": position}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            "query($id: UUID!) { cartAt(id: $id, version: 1) { version } }",
            json!({"id": cart}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            "query($id: UUID!) { cartAt(id: $id, at: \"2999-01-01T00:00:00Z\") { version history { edges { node { version } } } } }",
            json!({"id": cart}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&admin),
            "query($s: String!) { streamEvents(streamId: $s) { version } }",
            json!({"s": stream}),
        )
        .await,
    );

    // Commands, with and without an expected version.
    let add = "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version } } }";
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            add,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1}}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            add,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "expectedVersion": 2}}),
        )
        .await,
    );

    // The customer's list no longer has it; the other cart works as before.
    let mine = gql_data(
        &server,
        Some(&alice),
        "query { me { carts(first: 10) { edges { node { id } } } } }",
        json!({}),
    )
    .await;
    let ids: Vec<&str> = mine["me"]["carts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![other.as_str()]);
    let added = add_item(&server, &alice, &other, "apple", 1).await;
    assert_eq!(added["cart"]["version"], 2, "{added}");
    server.stop().await;
}

/// An admin archives carts while eight customers write to carts of their own and a feed
/// reader (the `events` subscription) follows from the start: the reader sees every event
/// exactly once and in order, the archived carts' too, and a reader who starts afterwards
/// sees the very same feed.
async fn archiving_under_concurrent_writes_keeps_the_feed(database_url: String) {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use crate::support::subscribe;

    const WAIT: Duration = Duration::from_secs(20);
    const QUERY: &str = "subscription($c: [String!]) { events(categories: $c) { position streamId version type } }";
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    register_product(&server, &admin, "apple", "Apple", "0.50", 100_000).await;
    let alice = server.token("alice", Role::Customer);
    let mut old = Vec::new();
    for _ in 0..6 {
        let cart = create_cart(&server, &alice).await;
        add_item(&server, &alice, &cart, "apple", 1).await;
        old.push(cart);
    }
    let filter = json!({"c": ["cart", "archive"]});
    let mut follower = subscribe(&server, &admin, QUERY, filter.clone()).await;

    let server = std::sync::Arc::new(server);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let server = server.clone();
            tokio::spawn(async move {
                let token = server.token(&format!("writer-{w}"), Role::Customer);
                let cart = create_cart(&server, &token).await;
                for _ in 0..10 {
                    add_item(&server, &token, &cart, "apple", 1).await;
                }
                cart
            })
        })
        .collect();
    for cart in &old {
        let archived = gql_data(&server, Some(&admin), ARCHIVE, json!({"s": format!("cart-{cart}")})).await;
        assert_eq!(archived["archiveStream"]["eventsMoved"], 2, "{archived}");
    }
    let mut live = Vec::new();
    for writer in writers {
        live.push(writer.await.expect("a writer"));
    }

    let expected = 6 * 2 + 6 + 8 * 11;
    let mut seen = Vec::new();
    while seen.len() < expected {
        let message = follower.next(WAIT).await;
        seen.push(message["data"]["events"].clone());
    }
    let positions: Vec<u64> = seen.iter().map(|e| e["position"].as_str().unwrap().parse().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "strictly increasing positions");
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &seen {
        versions
            .entry(event["streamId"].as_str().unwrap().to_owned())
            .or_default()
            .push(event["version"].as_u64().unwrap());
    }
    for cart in &old {
        assert_eq!(versions[&format!("cart-{cart}")], vec![1, 2], "an archived cart's events, once each");
    }
    for cart in &live {
        assert_eq!(
            versions[&format!("cart-{cart}")],
            (1..=11).collect::<Vec<u64>>(),
            "a live cart's events, once each"
        );
    }
    assert_eq!(versions["archive-log"], (1..=6).collect::<Vec<u64>>());
    let streams: BTreeSet<&String> = versions.keys().collect();
    assert_eq!(streams.len(), 6 + 8 + 1, "nothing else in these categories");

    let mut late = subscribe(&server, &admin, QUERY, filter).await;
    for event in &seen {
        assert_eq!(
            &late.next(WAIT).await["data"]["events"],
            event,
            "a reader starting after archiving reads the same feed"
        );
    }
    drop((follower, late));
    match std::sync::Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => panic!("the writers still hold the server"),
    }
}

/// The retention policy as configured runs in the server's worker role: an idle open cart
/// is archived by itself, answers ARCHIVED, and the job's progress is in `/metrics`.
async fn the_configured_policy_archives_idle_carts(database_url: String) {
    use std::time::Duration;

    use crate::support::{eventually, metrics, spawn_server_with, test_config};

    let mut config = test_config(database_url);
    config.retention = api::config::RetentionOptions {
        retention_idle_for: api::config::IdleFor(Some(Duration::from_millis(300))),
        retention_batch_size: 10,
        retention_pause: Duration::from_millis(10),
        retention_interval: Duration::from_millis(50),
    };
    let server = spawn_server_with(config).await;
    let alice = server.token("alice", Role::Customer);
    let cart = create_cart(&server, &alice).await;
    let query = "query($id: UUID!) { cart(id: $id) { id } }";
    let code = eventually(Duration::from_secs(20), "the idle cart is archived", || async {
        let body = crate::support::post_graphql(&server, Some(&alice), query, json!({"id": cart})).await.1;
        crate::support::error_codes(&body).into_iter().next()
    })
    .await;
    assert_eq!(code, "ARCHIVED");
    let page = metrics(&server).await;
    let archived = page
        .lines()
        .find(|l| l.starts_with("cartsource_retention_archived_streams_total"))
        .unwrap_or_else(|| panic!("no retention metric in {page}"));
    let count: f64 = archived.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{archived}");
    assert!(page.contains("cartsource_retention_last_batch_unix_seconds"), "{page}");
    server.stop().await;
}

/// An admin truncates a long product stream behind its snapshot: the product works on,
/// and its whole history is still readable (from the archive).
async fn long_product_streams_truncate_behind_their_snapshot(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    let truncate = "mutation($s: String!) { truncateStream(streamId: $s) { streamId truncatedThrough eventsMoved } }";
    register_product(&server, &admin, "tea", "Tea", "4.50", 10).await;
    register_product(&server, &admin, "mug", "Mug", "12.00", 10).await;
    let receive = "mutation($sku: String!) { receiveStock(input: {sku: $sku, quantity: 1}) { product { version } } }";
    for _ in 0..60 {
        gql_data(&server, Some(&admin), receive, json!({"sku": "tea"})).await;
    }
    assert_eq!(
        gql_error_code(&server, Some(&alice), truncate, json!({"s": "product-tea"})).await,
        "FORBIDDEN"
    );
    let cart = format!("cart-{}", create_cart(&server, &alice).await);
    assert_eq!(
        gql_error_code(&server, Some(&admin), truncate, json!({"s": cart})).await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        gql_error_code(&server, Some(&admin), truncate, json!({"s": "product-mug"})).await,
        "BAD_USER_INPUT",
        "no snapshot yet"
    );

    let done = gql_data(&server, Some(&admin), truncate, json!({"s": "product-tea"})).await["truncateStream"].clone();
    let through = done["truncatedThrough"].as_i64().unwrap();
    assert!((50..62).contains(&through), "{done}");
    assert_eq!(done["eventsMoved"].as_i64(), Some(through));

    // The product goes on, and all of its history is there, in order.
    let version = gql_data(&server, Some(&admin), receive, json!({"sku": "tea"})).await["receiveStock"]["product"]["version"].clone();
    assert_eq!(version, 63);
    let history = gql_data(
        &server,
        Some(&admin),
        "query { streamEvents(streamId: \"product-tea\", first: 100) { version } }",
        json!({}),
    )
    .await;
    let versions: Vec<i64> = history["streamEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, (1..=63).collect::<Vec<i64>>());
    let add = add_item(&server, &alice, &cart[5..], "tea", 2).await;
    assert_eq!(add["cart"]["itemCount"], 2, "{add}");
    server.stop().await;
}

on_both_backends!(
    long_product_streams_truncate_behind_their_snapshot,
    archived_carts_answer_archived,
    archiving_under_concurrent_writes_keeps_the_feed,
    the_configured_policy_archives_idle_carts
);

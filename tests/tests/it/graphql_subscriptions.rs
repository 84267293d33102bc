//! Subscriptions over graphql-transport-ws on both backends: a cart's changes arrive in
//! order with no gap and no duplicate while writes are committed during the replay, a
//! reconnect with afterVersion resumes exactly, an order's changes start with its
//! current state, and the admin's log follows the store with a category filter.

use std::time::Duration;

use crate::support::{add_item, create_cart, gql_data, register_product, spawn_server, subscribe, LiveSubscription};
use api::auth::Role;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

const CART_CHANGED: &str = "subscription($id: UUID!, $after: Int) { cartChanged(cartId: $id, afterVersion: $after) {
    event { __typename version position actor ... on ItemAddedToCart { sku quantity } }
    cart { id version itemCount status updatedAt lines { sku quantity } } } }";

/// Reads cart changes until `last` and checks they are exactly versions `from..=last`,
/// each cart right after its event.
async fn read_changes(sub: &mut LiveSubscription, from: i64, last: i64) -> Vec<serde_json::Value> {
    let mut changes = Vec::new();
    let mut expected = from;
    while expected <= last {
        let message = sub.next(WAIT).await;
        assert!(message.get("errors").is_none_or(|e| e.is_null()), "{message}");
        let change = message["data"]["cartChanged"].clone();
        assert_eq!(change["event"]["version"], expected, "no gap, no duplicate, in order: {change}");
        assert_eq!(change["cart"]["version"], expected, "the cart right after the event: {change}");
        changes.push(change);
        expected += 1;
    }
    changes
}

async fn cart_changes_have_no_gap_and_no_duplicate(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 1000).await;
    let cart = create_cart(&server, &alice).await;
    for _ in 0..3 {
        add_item(&server, &alice, &cart, "apple", 1).await;
    }

    // Writers keep committing while the subscription replays and goes live.
    const WRITES: i64 = 30;
    let writer = async {
        for _ in 0..WRITES {
            add_item(&server, &alice, &cart, "apple", 1).await;
        }
    };
    let reader = async {
        let mut sub = subscribe(&server, &alice, CART_CHANGED, json!({"id": cart})).await;
        read_changes(&mut sub, 1, 4 + WRITES).await
    };
    let ((), changes) = tokio::join!(writer, reader);
    assert_eq!(changes[0]["event"]["__typename"], "CartCreated");
    for change in &changes[1..] {
        let version = change["event"]["version"].as_i64().expect("version");
        assert_eq!(change["event"]["__typename"], "ItemAddedToCart");
        assert_eq!(change["event"]["actor"], "alice");
        assert_eq!(change["cart"]["itemCount"], version - 1, "one apple per add: {change}");
    }
    let positions: Vec<u64> = changes
        .iter()
        .map(|c| c["event"]["position"].as_str().and_then(|p| p.parse().ok()).expect("position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");

    // The last change equals the cart as the event store has it.
    let stored = gql_data(
        &server,
        Some(&alice),
        "query($id: UUID!) { cartAt(id: $id, version: 34) { version itemCount lines { sku quantity } } }",
        json!({"id": cart}),
    )
    .await;
    let last = &changes[changes.len() - 1]["cart"];
    assert_eq!(
        stored["cartAt"],
        json!({"version": last["version"], "itemCount": last["itemCount"], "lines": last["lines"]})
    );

    // A client that saw up to version 20 reconnects: 21.. replayed, then live ones,
    // delivered to it and to the first subscriber alike.
    let mut resumed = subscribe(&server, &alice, CART_CHANGED, json!({"id": cart, "after": 20})).await;
    read_changes(&mut resumed, 21, 34).await;
    let mut from_now = subscribe(&server, &alice, CART_CHANGED, json!({"id": cart, "after": 34})).await;
    let data = gql_data(
        &server,
        Some(&alice),
        "mutation($id: UUID!) { removeItemFromCart(input: {cartId: $id, sku: \"apple\"}) { cart { version } } }",
        json!({"id": cart}),
    )
    .await;
    assert_eq!(data["removeItemFromCart"]["cart"]["version"], 35);
    for sub in [&mut resumed, &mut from_now] {
        let change = read_changes(sub, 35, 35).await.remove(0);
        assert_eq!(change["event"]["__typename"], "ItemRemovedFromCart");
        assert_eq!(change["cart"]["lines"], json!([]));
    }

    // afterVersion beyond the cart's version is refused.
    let mut ahead = subscribe(&server, &alice, CART_CHANGED, json!({"id": cart, "after": 99})).await;
    let message = ahead.next(WAIT).await;
    assert_eq!(message["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{message}");
    server.stop().await;
}

/// The subscribers of one cart share the work of each change (its fold and, per document,
/// its rendering): each must still get exactly its own selection and variables.
async fn subscribers_of_one_cart_each_get_their_own_selection(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 1000).await;
    register_product(&server, &admin, "pear", "Pear", "0.75", 1000).await;
    let cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart, "apple", 1).await;

    const SMALL: &str = "subscription($id: UUID!, $after: Int, $lines: Boolean!) {
        cartChanged(cartId: $id, afterVersion: $after) { cart { version subtotal { amount } lines @include(if: $lines) { sku } } } }";
    let mut full = [
        subscribe(&server, &alice, CART_CHANGED, json!({"id": cart, "after": 2})).await,
        subscribe(&server, &admin, CART_CHANGED, json!({"id": cart, "after": 2})).await,
    ];
    // One document, three sets of variables: two render alike, one with lines, and one
    // that replays from version 1 first.
    let mut small = subscribe(&server, &alice, SMALL, json!({"id": cart, "after": 2, "lines": false})).await;
    let mut with_lines = subscribe(&server, &alice, SMALL, json!({"id": cart, "after": 2, "lines": true})).await;
    let mut from_start = subscribe(&server, &alice, SMALL, json!({"id": cart, "after": 0, "lines": false})).await;
    for _ in 0..3 {
        add_item(&server, &alice, &cart, "pear", 2).await;
    }

    let full_changes = [read_changes(&mut full[0], 3, 5).await, read_changes(&mut full[1], 3, 5).await];
    assert_eq!(full_changes[0], full_changes[1], "the same document and variables render alike");
    for (i, change) in full_changes[0].iter().enumerate() {
        assert_eq!(change["event"]["sku"], "pear", "{change}");
        assert_eq!(change["cart"]["lines"][1], json!({"sku": "pear", "quantity": 2 * (i + 1)}));
    }
    for version in 1..=5i64 {
        let message = from_start.next(WAIT).await;
        assert_eq!(message["data"]["cartChanged"]["cart"]["version"], version, "{message}");
        if version >= 3 {
            let cents = 50 + 150 * (version - 2);
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            let cart = json!({"version": version, "subtotal": {"amount": amount}});
            assert_eq!(message["data"]["cartChanged"], json!({"cart": cart}), "only its own selection");
            assert_eq!(small.next(WAIT).await, message, "another subscriber of the same selection");
            let mut cart = cart;
            cart["lines"] = json!([{"sku": "apple"}, {"sku": "pear"}]);
            let message = with_lines.next(WAIT).await;
            assert_eq!(message["data"]["cartChanged"], json!({"cart": cart}), "its own variables");
        }
    }
    server.stop().await;
}

async fn order_changes_start_with_the_current_state(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;
    let cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart, "apple", 2).await;
    let placed = gql_data(
        &server,
        Some(&alice),
        "mutation($id: UUID!) { placeOrder(input: {cartId: $id}) { order { id } } }",
        json!({"id": cart}),
    )
    .await;
    let order = placed["placeOrder"]["order"]["id"].as_str().expect("order id").to_owned();

    let query = "subscription($id: UUID!) { orderChanged(orderId: $id) { id status version total { amount } placedAt updatedAt } }";
    let mut sub = subscribe(&server, &alice, query, json!({"id": order})).await;
    let first = sub.next(WAIT).await["data"]["orderChanged"].clone();
    assert_eq!(first["id"], order.as_str());
    assert_eq!(first["total"]["amount"], "1.00");
    // Fulfilment may already have picked it up; either way the changes follow in order.
    let mut seen = vec![first.clone()];
    while seen.last().is_some_and(|o| o["status"] != "PREPARING") {
        seen.push(sub.next(WAIT).await["data"]["orderChanged"].clone());
    }
    let shipped = gql_data(
        &server,
        Some(&admin),
        "mutation($id: UUID!) { shipOrder(input: {orderId: $id}) { order { version } } }",
        json!({"id": order}),
    )
    .await;
    let change = sub.next(WAIT).await["data"]["orderChanged"].clone();
    assert_eq!(change["status"], "SHIPPED");
    assert_eq!(change["version"], shipped["shipOrder"]["order"]["version"]);
    seen.push(change);
    let versions: Vec<i64> = seen.iter().map(|o| o["version"].as_i64().expect("version")).collect();
    assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "consecutive versions: {versions:?}");
    assert!(seen.iter().all(|o| o["placedAt"] == first["placedAt"]));
    server.stop().await;
}

async fn the_log_follows_the_store(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    let query = "subscription($after: Position, $categories: [String!]) { events(afterPosition: $after, categories: $categories) {
        position streamId version type schemaVersion data metadata occurredAt } }";
    let mut carts_only = subscribe(&server, &admin, query, json!({"categories": ["cart"]})).await;
    let mut everything = subscribe(&server, &admin, query, json!({})).await;

    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;
    let cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart, "apple", 1).await;

    let mut cart_events = Vec::new();
    while cart_events.len() < 2 {
        let event = carts_only.next(WAIT).await["data"]["events"].clone();
        assert!(event["streamId"].as_str().is_some_and(|s| s.starts_with("cart-")), "{event}");
        cart_events.push(event);
    }
    assert_eq!(cart_events[0]["type"], "CartCreated");
    assert_eq!(cart_events[0]["metadata"]["actor"], "alice");
    assert_eq!(cart_events[1]["type"], "ItemAddedToCart");
    assert_eq!(cart_events[1]["data"]["sku"], "apple");

    let mut all = Vec::new();
    while all.len() < 4 {
        all.push(everything.next(WAIT).await["data"]["events"].clone());
    }
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(types, ["ProductRegistered", "StockReceived", "CartCreated", "ItemAddedToCart"]);

    // Resuming after a position skips what came before it.
    let after = all[2]["position"].clone();
    let mut resumed = subscribe(&server, &admin, query, json!({"after": after})).await;
    let next = resumed.next(WAIT).await["data"]["events"].clone();
    assert_eq!(next["type"], "ItemAddedToCart");
    assert_eq!(next["position"], all[3]["position"]);
    server.stop().await;
}

on_both_backends!(
    cart_changes_have_no_gap_and_no_duplicate,
    subscribers_of_one_cart_each_get_their_own_selection,
    order_changes_start_with_the_current_state,
    the_log_follows_the_store
);

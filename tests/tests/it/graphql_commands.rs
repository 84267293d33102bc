//! The command handler's promises over HTTP, on both backends: optimistic concurrency
//! with `expectedVersion`, retries without it (concurrent writers never make a command
//! fail), and idempotency keys that belong to their caller.

use crate::support::{create_cart, gql_data, gql_error, post_graphql, register_product, spawn_server, TestServer};
use api::auth::Role;
use futures::future::join_all;
use serde_json::json;

const ADD: &str =
    "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version itemCount lines { sku quantity } } position } }";

/// The cart as the event store has it now.
async fn stored_cart(server: &TestServer, token: &str, cart_id: &str) -> serde_json::Value {
    let data = gql_data(
        server,
        Some(token),
        "query($id: UUID!) { cartAt(id: $id, at: \"2999-01-01T00:00:00Z\") { version itemCount lines { sku quantity } } }",
        json!({"id": cart_id}),
    )
    .await;
    data["cartAt"].clone()
}

async fn optimistic_concurrency(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 1000).await;
    let cart = create_cart(&server, &alice).await;

    // The right version passes; a stale one is refused with both versions.
    let data = gql_data(
        &server,
        Some(&alice),
        ADD,
        json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "expectedVersion": 1}}),
    )
    .await;
    assert_eq!(data["addItemToCart"]["cart"]["version"], 2);
    let error = gql_error(
        &server,
        Some(&alice),
        ADD,
        json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "expectedVersion": 1}}),
    )
    .await;
    assert_eq!(
        error["extensions"],
        json!({"code": "CONCURRENCY_CONFLICT", "expectedVersion": 1, "actualVersion": 2})
    );

    // Two writers at the same expected version: exactly one wins.
    let racers = (0..2).map(|_| {
        post_graphql(
            &server,
            Some(&alice),
            ADD,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "expectedVersion": 2}}),
        )
    });
    let outcomes = join_all(racers).await;
    let won = outcomes.iter().filter(|(_, body)| body.get("errors").is_none()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    let lost = outcomes
        .iter()
        .find(|(_, body)| body.get("errors").is_some())
        .map(|(_, body)| body["errors"][0]["extensions"].clone());
    assert_eq!(
        lost,
        Some(json!({"code": "CONCURRENCY_CONFLICT", "expectedVersion": 2, "actualVersion": 3}))
    );
    assert_eq!(stored_cart(&server, &alice, &cart).await["version"], 3);

    // Without expectedVersion, 20 concurrent adds to one cart all apply.
    let adds = (0..20).map(|_| {
        post_graphql(
            &server,
            Some(&alice),
            ADD,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1}}),
        )
    });
    let outcomes = join_all(adds).await;
    let mut versions: Vec<i64> = outcomes
        .iter()
        .map(|(status, body)| {
            assert!(*status == 200 && body.get("errors").is_none(), "a concurrent add failed: {body}");
            body["data"]["addItemToCart"]["cart"]["version"].as_i64().expect("version")
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (4..=23).collect::<Vec<_>>(), "each add saw the state right after its own event");
    assert_eq!(
        stored_cart(&server, &alice, &cart).await,
        json!({"version": 23, "itemCount": 22, "lines": [{"sku": "apple", "quantity": 22}]})
    );
    server.stop().await;
}

async fn idempotency_keys(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    let bob = server.token("bob", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;

    // createCart without a client id: the retry answers with the same cart.
    let create = "mutation($key: String) { createCart(input: {idempotencyKey: $key}) { cart { id version } position } }";
    let first = gql_data(&server, Some(&alice), create, json!({"key": "create-1"})).await;
    let again = gql_data(&server, Some(&alice), create, json!({"key": "create-1"})).await;
    assert_eq!(first, again);
    let cart = first["createCart"]["cart"]["id"].as_str().expect("cart id").to_owned();

    // A retried add returns the first outcome and appends nothing more, even when the
    // retries race each other.
    let input = json!({"input": {"cartId": cart, "sku": "apple", "quantity": 2, "idempotencyKey": "add-1"}});
    let first = gql_data(&server, Some(&alice), ADD, input.clone()).await;
    let retries = join_all((0..5).map(|_| post_graphql(&server, Some(&alice), ADD, input.clone()))).await;
    for (_, body) in &retries {
        assert_eq!(body["data"], first, "{body}");
    }
    assert_eq!(
        stored_cart(&server, &alice, &cart).await,
        json!({"version": 2, "itemCount": 2, "lines": [{"sku": "apple", "quantity": 2}]})
    );

    // The same key with a different request is refused; nothing appended.
    let other = json!({"input": {"cartId": cart, "sku": "apple", "quantity": 3, "idempotencyKey": "add-1"}});
    assert_eq!(gql_error(&server, Some(&alice), ADD, other).await["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(stored_cart(&server, &alice, &cart).await["version"], 2);

    // A key belongs to its caller: bob's identical key is a different key.
    let bobs_cart = create_cart(&server, &bob).await;
    let data = gql_data(
        &server,
        Some(&bob),
        ADD,
        json!({"input": {"cartId": bobs_cart, "sku": "apple", "quantity": 2, "idempotencyKey": "add-1"}}),
    )
    .await;
    assert_eq!(data["addItemToCart"]["cart"]["version"], 2);

    // placeOrder retried after it succeeded: the same order, not CART_NOT_OPEN, and the
    // stock reserved once.
    let place = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { order { id status version total { amount } } position } }";
    let input = json!({"input": {"cartId": cart, "idempotencyKey": "order-1"}});
    let first = gql_data(&server, Some(&alice), place, input.clone()).await;
    let again = gql_data(&server, Some(&alice), place, input).await;
    assert_eq!(first, again);
    assert_eq!(stored_cart(&server, &alice, &cart).await["version"], 3);
    let order = first["placeOrder"]["order"]["id"].as_str().expect("order id").to_owned();

    // A second order for the rest of the stock: only 8 left if apple was reserved once.
    let second = create_cart(&server, &alice).await;
    gql_data(
        &server,
        Some(&alice),
        ADD,
        json!({"input": {"cartId": second, "sku": "apple", "quantity": 8}}),
    )
    .await;
    gql_data(&server, Some(&alice), place, json!({"input": {"cartId": second}})).await;

    // cancelOrder retried: the first outcome, not INVALID_ORDER_STATE.
    let cancel = "mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { order { status version } position } }";
    let input = json!({"input": {"orderId": order, "idempotencyKey": "cancel-1"}});
    let first = gql_data(&server, Some(&alice), cancel, input.clone()).await;
    let again = gql_data(&server, Some(&alice), cancel, input).await;
    assert_eq!(first, again);
    assert_eq!(first["cancelOrder"]["order"]["status"], "CANCELLED");
    server.stop().await;
}

on_both_backends!(optimistic_concurrency, idempotency_keys);

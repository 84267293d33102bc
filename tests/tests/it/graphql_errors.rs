//! Every error code of the contract, over HTTP on both backends, with the details the
//! contract promises (numbers for versions and quantities) and the rule that a rejected
//! command appends nothing. CONSISTENCY_TIMEOUT and INTERNAL_SERVER_ERROR are pinned at
//! the schema level (graphql_schema.rs), RATE_LIMITED with the transport (server_http.rs).

use std::time::Duration;

use crate::support::{
    add_item, create_cart, eventually, gql_data, gql_error, gql_error_code, register_product, spawn_server, TestServer, TEST_SECRET,
};
use api::auth::{issue_token, Role};
use serde_json::json;

const ADD: &str = "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version } } }";
const PLACE: &str = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { order { id status } position } }";

/// The cart's version in the event store (not the projection).
async fn cart_version(server: &TestServer, token: &str, cart_id: &str) -> i64 {
    let data = gql_data(
        server,
        Some(token),
        "query($id: UUID!) { cartAt(id: $id, at: \"2999-01-01T00:00:00Z\") { version } }",
        json!({"id": cart_id}),
    )
    .await;
    data["cartAt"]["version"].as_i64().expect("a version")
}

async fn authentication_codes(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    register_product(&server, &admin, "apple", "Apple", "0.50", 5).await;

    // Catalog reads need no token; everything else does.
    eventually(Duration::from_secs(20), "the catalog shows apple", || async {
        let data = gql_data(&server, None, "{ product(sku: \"apple\") { sku } }", json!({})).await;
        (data["product"]["sku"] == "apple").then_some(())
    })
    .await;
    for query in [
        "{ me { id } }",
        "mutation { createCart { cart { id } } }",
        "{ cart(id: \"00000000-0000-0000-0000-000000000001\") { id } }",
        "{ projections { name } }",
    ] {
        assert_eq!(gql_error_code(&server, None, query, json!({})).await, "UNAUTHENTICATED", "{query}");
    }
    // Admin-only with no token: UNAUTHENTICATED, not FORBIDDEN.
    let register = "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"1.00\"}) { position } }";
    assert_eq!(gql_error_code(&server, None, register, json!({})).await, "UNAUTHENTICATED");

    // Bad tokens are refused, never treated as anonymous.
    let forged = issue_token("alice", Role::Admin, Duration::from_secs(60), b"not the server's secret").expect("token");
    let expired = crate::support::expired_token("alice", Role::Customer, Duration::from_secs(600), TEST_SECRET.as_bytes());
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.";
    for token in [forged.as_str(), expired.as_str(), unsigned, "garbage"] {
        let error = gql_error(&server, Some(token), "{ product(sku: \"apple\") { sku } }", json!({})).await;
        assert_eq!(error["extensions"]["code"], "UNAUTHENTICATED", "{token}: {error}");
        assert!(
            !error["message"].as_str().unwrap_or_default().contains(token),
            "the message does not echo the token"
        );
    }
    server.stop().await;
}

async fn command_codes(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 5).await;
    register_product(&server, &admin, "banana", "Banana", "0.25", 0).await;
    let cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart, "apple", 2).await;

    // NOT_FOUND: an unknown sku (prices come from the catalog), an unknown cart.
    let error = gql_error(
        &server,
        Some(&alice),
        ADD,
        json!({"input": {"cartId": cart, "sku": "kiwi", "quantity": 1}}),
    )
    .await;
    assert_eq!(error["extensions"]["code"], "NOT_FOUND");
    let nowhere = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        gql_error_code(
            &server,
            Some(&alice),
            ADD,
            json!({"input": {"cartId": nowhere, "sku": "apple", "quantity": 1}})
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        gql_error_code(
            &server,
            Some(&alice),
            "mutation($id: UUID!) { cancelOrder(input: {orderId: $id}) { position } }",
            json!({"id": nowhere})
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        gql_error_code(
            &server,
            Some(&admin),
            "mutation($id: UUID!) { shipOrder(input: {orderId: $id}) { position } }",
            json!({"id": nowhere})
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        gql_error_code(
            &server,
            Some(&admin),
            "mutation { changeProductPrice(input: {sku: \"kiwi\", price: \"1.00\"}) { position } }",
            json!({})
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        gql_error_code(
            &server,
            Some(&admin),
            "mutation { rebuildProjection(name: \"no-such-projection\") { name } }",
            json!({})
        )
        .await,
        "NOT_FOUND"
    );

    // BAD_USER_INPUT: values the domain refuses and values that do not coerce.
    for quantity in [0, 1000, -1] {
        let code = gql_error_code(
            &server,
            Some(&alice),
            ADD,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": quantity}}),
        )
        .await;
        assert_eq!(code, "BAD_USER_INPUT", "quantity {quantity}");
    }
    let bad_inputs = [
        (ADD, json!({"input": {"cartId": "not-a-uuid", "sku": "apple", "quantity": 1}})),
        (ADD, json!({"input": {"cartId": cart, "sku": "apple", "quantity": 3_000_000_000_i64}})),
        (ADD, json!({"input": {"cartId": cart, "sku": "not a sku!", "quantity": 1}})),
        (
            ADD,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "expectedVersion": -1}}),
        ),
        (
            ADD,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "idempotencyKey": ""}}),
        ),
        (
            "query($p: Position) { cart(id: \"00000000-0000-4000-8000-000000000000\", minPosition: $p) { id } }",
            json!({"p": "12abc"}),
        ),
        (
            "query($p: Position) { cart(id: \"00000000-0000-4000-8000-000000000000\", minPosition: $p) { id } }",
            json!({"p": "-5"}),
        ),
        ("{ cart(id: \"1234\") { id } }", json!({})),
        (
            "query($id: UUID!) { cartAt(id: $id, version: 1, at: \"2026-01-01T00:00:00Z\") { id } }",
            json!({"id": cart}),
        ),
        ("query($id: UUID!) { cartAt(id: $id) { id } }", json!({"id": cart})),
        ("query($id: UUID!) { cartAt(id: $id, at: \"yesterday\") { id } }", json!({"id": cart})),
        ("{ me { carts(first: 1000) { nodes { id } } } }", json!({})),
        ("{ me { carts(after: \"not-a-cursor\") { nodes { id } } } }", json!({})),
        ("{ me { nickname } }", json!({})),
    ];
    for (query, variables) in bad_inputs {
        let error = gql_error(&server, Some(&alice), query, variables.clone()).await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{query} {variables}: {error}");
    }
    let bad_products = [
        "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"1.234\"}) { position } }",
        "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"0\"}) { position } }",
        "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"12,50\"}) { position } }",
        "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"1.00\", initialStock: -1}) { position } }",
        "mutation { registerProduct(input: {sku: \"apple\", name: \"Apple again\", price: \"1.00\"}) { position } }",
        "mutation { receiveStock(input: {sku: \"apple\", quantity: 0}) { position } }",
    ];
    for query in bad_products {
        assert_eq!(gql_error_code(&server, Some(&admin), query, json!({})).await, "BAD_USER_INPUT", "{query}");
    }
    assert_eq!(
        gql_error_code(&server, Some(&alice), "{ me { id ", json!({})).await,
        "GRAPHQL_PARSE_FAILED"
    );

    // CONCURRENCY_CONFLICT, with the versions as JSON numbers; nothing appended.
    let before = cart_version(&server, &alice, &cart).await;
    assert_eq!(before, 2);
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
    assert_eq!(cart_version(&server, &alice, &cart).await, before);

    // ITEM_NOT_IN_CART.
    let remove = "mutation($input: RemoveItemFromCartInput!) { removeItemFromCart(input: $input) { cart { version } } }";
    assert_eq!(
        gql_error_code(&server, Some(&alice), remove, json!({"input": {"cartId": cart, "sku": "banana"}})).await,
        "ITEM_NOT_IN_CART"
    );
    let change = "mutation($input: ChangeItemQuantityInput!) { changeItemQuantity(input: $input) { cart { version } } }";
    assert_eq!(
        gql_error_code(
            &server,
            Some(&alice),
            change,
            json!({"input": {"cartId": cart, "sku": "banana", "quantity": 2}})
        )
        .await,
        "ITEM_NOT_IN_CART"
    );

    // EMPTY_CART.
    let empty = create_cart(&server, &alice).await;
    assert_eq!(
        gql_error_code(&server, Some(&alice), PLACE, json!({"input": {"cartId": empty}})).await,
        "EMPTY_CART"
    );
    assert_eq!(cart_version(&server, &alice, &empty).await, 1);

    // OUT_OF_STOCK with sku, requested and available as numbers; nothing appended
    // anywhere (the apple line is fine, the banana line is not).
    add_item(&server, &alice, &cart, "banana", 3).await;
    let before = cart_version(&server, &alice, &cart).await;
    let error = gql_error(&server, Some(&alice), PLACE, json!({"input": {"cartId": cart}})).await;
    assert_eq!(
        error["extensions"],
        json!({"code": "OUT_OF_STOCK", "sku": "banana", "requested": 3, "available": 0})
    );
    assert_eq!(cart_version(&server, &alice, &cart).await, before);

    // CART_NOT_OPEN once checked out.
    gql_data(&server, Some(&alice), remove, json!({"input": {"cartId": cart, "sku": "banana"}})).await;
    let placed = gql_data(&server, Some(&alice), PLACE, json!({"input": {"cartId": cart}})).await;
    let order_id = placed["placeOrder"]["order"]["id"].as_str().expect("order id").to_owned();
    assert_eq!(
        gql_error_code(
            &server,
            Some(&alice),
            ADD,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1}})
        )
        .await,
        "CART_NOT_OPEN"
    );
    assert_eq!(
        gql_error_code(&server, Some(&alice), PLACE, json!({"input": {"cartId": cart}})).await,
        "CART_NOT_OPEN"
    );
    assert_eq!(
        gql_error_code(
            &server,
            Some(&alice),
            "mutation($id: UUID!) { clearCart(input: {cartId: $id}) { position } }",
            json!({"id": cart})
        )
        .await,
        "CART_NOT_OPEN"
    );

    // INVALID_ORDER_STATE: a cancelled order neither cancels nor ships again.
    let cancel = "mutation($id: UUID!) { cancelOrder(input: {orderId: $id, reason: \"changed my mind\"}) { order { status } } }";
    let data = gql_data(&server, Some(&alice), cancel, json!({"id": order_id})).await;
    assert_eq!(data["cancelOrder"]["order"]["status"], "CANCELLED");
    let error = gql_error(&server, Some(&alice), cancel, json!({"id": order_id})).await;
    assert_eq!(error["extensions"]["code"], "INVALID_ORDER_STATE");
    let ship = "mutation($id: UUID!) { shipOrder(input: {orderId: $id}) { order { status } } }";
    assert_eq!(
        gql_error_code(&server, Some(&admin), ship, json!({"id": order_id})).await,
        "INVALID_ORDER_STATE"
    );
    server.stop().await;
}

on_both_backends!(authentication_codes, command_codes);

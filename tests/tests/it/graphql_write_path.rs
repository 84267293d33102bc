//! The write path end to end: commands without `expectedVersion` on one cart through two
//! server processes sharing one Postgres all succeed; text the database cannot store
//! (a NUL character) is refused as BAD_USER_INPUT naming the field, and nothing is written.

use crate::support::{create_cart, gql_data, post_graphql, register_product, spawn_server, TestServer};
use api::auth::Role;
use futures::future::join_all;
use serde_json::json;

const ADD: &str = "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version } } }";

/// The cart as the event store has it now.
async fn stored_cart(server: &TestServer, token: &str, cart_id: &str) -> serde_json::Value {
    let data = gql_data(
        server,
        Some(token),
        "query($id: UUID!) { cartAt(id: $id, at: \"2999-01-01T00:00:00Z\") { version lines { sku quantity } } }",
        json!({"id": cart_id}),
    )
    .await;
    data["cartAt"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_through_two_servers_on_one_postgres_all_succeed() {
    let url = store::testing::postgres().await.url;
    let one = spawn_server(url.clone()).await;
    let two = spawn_server(url).await;
    let admin = one.token("ops", Role::Admin);
    let alice = one.token("alice", Role::Customer);
    for sku in ["tea", "mug"] {
        register_product(&one, &admin, sku, sku, "1.00", 0).await;
    }
    let cart = create_cart(&one, &alice).await;

    let adds = (0..64).map(|i| {
        let server = if i % 2 == 0 { &one } else { &two };
        let sku = if i % 4 < 2 { "tea" } else { "mug" };
        let (alice, cart) = (alice.clone(), cart.clone());
        async move {
            let (status, body) = post_graphql(
                server,
                Some(&alice),
                ADD,
                json!({"input": {"cartId": cart, "sku": sku, "quantity": i % 10 + 1}}),
            )
            .await;
            (sku, i % 10 + 1, status, body)
        }
    });
    let mut expected = std::collections::BTreeMap::new();
    let mut versions = Vec::new();
    for (sku, quantity, status, body) in join_all(adds).await {
        assert!(status == 200 && body["errors"].is_null(), "every add succeeds: {status} {body}");
        *expected.entry(sku).or_insert(0) += quantity;
        versions.push(body["data"]["addItemToCart"]["cart"]["version"].as_i64().expect("a version"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=65).collect::<Vec<_>>(), "each add got its own version");
    let stored = stored_cart(&two, &alice, &cart).await;
    assert_eq!(stored["version"], 65);
    let lines: std::collections::BTreeMap<&str, i64> = stored["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["sku"].as_str().expect("sku"), l["quantity"].as_i64().expect("quantity")))
        .collect();
    assert_eq!(lines, expected, "the final quantities are the sums of the adds");
    one.stop().await;
    two.stop().await;
}

async fn nul_text_is_bad_user_input(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "tea", "Tea", "1.00", 5).await;
    let cart = create_cart(&server, &alice).await;

    let refused = [
        // In a variable: an idempotency key and a sku.
        (
            Some(&alice),
            ADD,
            json!({"input": {"cartId": cart, "sku": "tea", "quantity": 1, "idempotencyKey": "k\u{0}1"}}),
            "input.idempotencyKey",
        ),
        (
            Some(&alice),
            ADD,
            json!({"input": {"cartId": cart, "sku": "te\u{0}a", "quantity": 1}}),
            "input.sku",
        ),
        // Inline in the document (a GraphQL \u0000 escape): an idempotency key, a name.
        (
            Some(&alice),
            r#"mutation { createCart(input: {idempotencyKey: "a\u0000b"}) { cart { id } } }"#,
            json!({}),
            "input.idempotencyKey",
        ),
        (
            Some(&admin),
            r#"mutation { registerProduct(input: {sku: "cup", name: "C\u0000up", price: "1.00"}) { product { sku } } }"#,
            json!({}),
            "input.name",
        ),
    ];
    for (token, query, variables, field) in refused {
        let (_, body) = post_graphql(&server, token.map(String::as_str), query, variables).await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body}");
        assert!(error["message"].as_str().unwrap_or_default().contains(field), "names {field}: {body}");
        assert!(body["data"].is_null(), "nothing ran: {body}");
    }
    let stored = stored_cart(&server, &alice, &cart).await;
    assert_eq!(stored["version"], 1, "nothing was written to the cart");
    let product = gql_data(&server, None, r#"{ product(sku: "cup") { sku } }"#, json!({})).await;
    assert!(product["product"].is_null(), "no product was registered");
    server.stop().await;
}

on_both_backends!(nul_text_is_bad_user_input);

//! Who may do what: a customer reads, changes and watches only their own carts and
//! orders (another's is as if it did not exist: reads answer null, mutations and
//! subscriptions NOT_FOUND); admin-only operations check the role before anything else.

use std::time::Duration;

use crate::support::{add_item, create_cart, gql_data, gql_error_code, register_product, spawn_server, ws_connect, ws_next_json, ws_send};
use api::auth::Role;
use serde_json::json;

/// The code of a refused subscription: graphql-transport-ws sends it as an `error`
/// message (a list of errors) or as a `next` whose payload has `errors` and no data.
fn refusal_code(message: &serde_json::Value) -> String {
    let errors = match message["type"].as_str() {
        Some("error") => &message["payload"],
        Some("next") => {
            assert!(message["payload"]["data"].is_null(), "a refusal carries no data: {message}");
            &message["payload"]["errors"]
        }
        _ => panic!("expected a refusal, got {message}"),
    };
    errors[0]["extensions"]["code"].as_str().unwrap_or_default().to_owned()
}

async fn customers_only_see_their_own(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    let bob = server.token("bob", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;
    let cart = create_cart(&server, &alice).await;
    let position = add_item(&server, &alice, &cart, "apple", 2).await["position"].clone();
    let open_cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &open_cart, "apple", 1).await;
    let placed = gql_data(
        &server,
        Some(&alice),
        "mutation($id: UUID!) { placeOrder(input: {cartId: $id}) { order { id } position } }",
        json!({"id": cart}),
    )
    .await;
    let order = placed["placeOrder"]["order"]["id"].as_str().expect("order id").to_owned();
    let order_position = placed["placeOrder"]["position"].clone();

    // Reads: null for bob, the cart for alice and for an admin.
    let read = "query($cart: UUID!, $order: UUID!, $p: Position, $q: Position) {
        cart(id: $cart, minPosition: $p) { id }
        cartAt(id: $cart, version: 2) { id }
        order(id: $order, minPosition: $q) { id } }";
    let vars = json!({"cart": cart, "order": order, "p": position, "q": order_position});
    let data = gql_data(&server, Some(&bob), read, vars.clone()).await;
    assert_eq!(data, json!({"cart": null, "cartAt": null, "order": null}));
    let data = gql_data(&server, Some(&alice), read, vars.clone()).await;
    assert_eq!(data["cart"]["id"], cart.as_str());
    assert_eq!(data["cartAt"]["id"], cart.as_str());
    assert_eq!(data["order"]["id"], order.as_str());
    let data = gql_data(&server, Some(&admin), read, vars).await;
    assert_eq!(data["order"]["id"], order.as_str());

    // Bob's `me` is his own, and empty.
    let data = gql_data(
        &server,
        Some(&bob),
        "{ me { id carts { nodes { id } } orders { nodes { id } } notifications { nodes { id } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data["me"],
        json!({"id": "bob", "carts": {"nodes": []}, "orders": {"nodes": []}, "notifications": {"nodes": []}})
    );

    // Mutations on alice's cart or order: NOT_FOUND for bob, nothing appended.
    let attempts = [
        (
            "mutation($c: UUID!) { addItemToCart(input: {cartId: $c, sku: \"apple\", quantity: 1}) { position } }",
            json!({"c": open_cart}),
        ),
        (
            "mutation($c: UUID!) { addItemToCart(input: {cartId: $c, sku: \"apple\", quantity: 0}) { position } }",
            json!({"c": open_cart}),
        ),
        (
            "mutation($c: UUID!) { changeItemQuantity(input: {cartId: $c, sku: \"apple\", quantity: 5}) { position } }",
            json!({"c": open_cart}),
        ),
        (
            "mutation($c: UUID!) { removeItemFromCart(input: {cartId: $c, sku: \"apple\"}) { position } }",
            json!({"c": open_cart}),
        ),
        (
            "mutation($c: UUID!) { clearCart(input: {cartId: $c}) { position } }",
            json!({"c": open_cart}),
        ),
        (
            "mutation($c: UUID!) { placeOrder(input: {cartId: $c}) { position } }",
            json!({"c": open_cart}),
        ),
        (
            "mutation($o: UUID!) { cancelOrder(input: {orderId: $o}) { position } }",
            json!({"o": order}),
        ),
    ];
    for (mutation, vars) in &attempts {
        assert_eq!(
            gql_error_code(&server, Some(&bob), mutation, vars.clone()).await,
            "NOT_FOUND",
            "{mutation}"
        );
    }
    let data = gql_data(
        &server,
        Some(&alice),
        "query($c: UUID!) { cartAt(id: $c, at: \"2999-01-01T00:00:00Z\") { version itemCount } }",
        json!({"c": open_cart}),
    )
    .await;
    assert_eq!(data["cartAt"], json!({"version": 2, "itemCount": 1}));
    // Cart changes are the owner's alone, even for an admin.
    assert_eq!(
        gql_error_code(&server, Some(&admin), attempts[0].0, attempts[0].1.clone()).await,
        "NOT_FOUND"
    );

    // Subscriptions to alice's cart or order are refused for bob with NOT_FOUND.
    for (subscription, vars) in [
        ("subscription($c: UUID!) { cartChanged(cartId: $c) { cart { id } } }", json!({"c": cart})),
        ("subscription($o: UUID!) { orderChanged(orderId: $o) { id } }", json!({"o": order})),
    ] {
        let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
        ws_send(
            &mut ws,
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {bob}")}}),
        )
        .await;
        assert_eq!(ws_next_json(&mut ws, Duration::from_secs(10)).await["type"], "connection_ack");
        ws_send(
            &mut ws,
            json!({"type": "subscribe", "id": "1", "payload": {"query": subscription, "variables": vars}}),
        )
        .await;
        let message = ws_next_json(&mut ws, Duration::from_secs(10)).await;
        assert_eq!(refusal_code(&message), "NOT_FOUND", "{message}");
    }

    // An admin may cancel a customer's order.
    let data = gql_data(
        &server,
        Some(&admin),
        "mutation($o: UUID!) { cancelOrder(input: {orderId: $o}) { order { status customerId } } }",
        json!({"o": order}),
    )
    .await;
    assert_eq!(data["cancelOrder"]["order"], json!({"status": "CANCELLED", "customerId": "alice"}));
    server.stop().await;
}

async fn admin_operations_check_the_role_first(database_url: String) {
    let server = spawn_server(database_url).await;
    let alice = server.token("alice", Role::Customer);
    let nowhere = "00000000-0000-4000-8000-000000000000";
    // Whatever the arguments: unknown ids, bad skus, values that do not even coerce,
    // missing fields. The role is checked first.
    let admin_only = [
        "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"abc\"}) { position } }",
        "mutation { registerProduct(input: {}) { position } }",
        "mutation { receiveStock(input: {sku: \"apple\", quantity: 99999999999}) { position } }",
        "mutation { shipOrder(input: {orderId: \"not-a-uuid\"}) { position } }",
        "mutation { a: createCart { position } b: rebuildProjection { name } }",
        "query Ops { ...Admin } fragment Admin on Query { projections { name } nope }",
        "mutation { registerProduct(input: {sku: \"bad sku!\", name: \"\", price: \"0\", initialStock: -5}) { position } }",
        "mutation { registerProduct(input: {sku: \"kiwi\", name: \"Kiwi\", price: \"1.00\"}) { position } }",
        "mutation { changeProductPrice(input: {sku: \"nothing-here\", price: \"1.234\"}) { position } }",
        "mutation { receiveStock(input: {sku: \"apple\", quantity: -1}) { position } }",
        "mutation { shipOrder(input: {orderId: \"00000000-0000-4000-8000-000000000000\"}) { position } }",
        "mutation { rebuildProjection(name: \"no-such-projection\") { name } }",
        "mutation { rebuildProjection(name: \"carts\") { name } }",
        "{ projections { name position headPosition state lastError updatedAt } }",
    ];
    for operation in admin_only {
        assert_eq!(
            gql_error_code(&server, Some(&alice), operation, json!({})).await,
            "FORBIDDEN",
            "{operation}"
        );
        assert_eq!(
            gql_error_code(&server, None, operation, json!({})).await,
            "UNAUTHENTICATED",
            "{operation}"
        );
    }
    // The `events` subscription too.
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    ws_send(&mut ws, json!({"type": "connection_init", "payload": {"token": alice}})).await;
    assert_eq!(ws_next_json(&mut ws, Duration::from_secs(10)).await["type"], "connection_ack");
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "id": "1", "payload": {"query": "subscription { events(categories: [\"cart\"]) { position } }"}}),
    )
    .await;
    let message = ws_next_json(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(refusal_code(&message), "FORBIDDEN", "{message}");

    // The admin gets through to the real answers.
    let admin = server.token("ops", Role::Admin);
    let data = gql_data(
        &server,
        Some(&admin),
        "{ projections { name position headPosition state updatedAt } }",
        json!({}),
    )
    .await;
    let names: Vec<&str> = data["projections"]
        .as_array()
        .expect("statuses")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for expected in ["carts", "orders", "products", "notifications"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert_eq!(
        gql_error_code(
            &server,
            Some(&admin),
            "mutation($o: UUID!) { shipOrder(input: {orderId: $o}) { position } }",
            json!({"o": nowhere})
        )
        .await,
        "NOT_FOUND"
    );
    let data = gql_data(
        &server,
        Some(&admin),
        "mutation { rebuildProjection(name: \"carts\") { name state } }",
        json!({}),
    )
    .await;
    assert_eq!(data["rebuildProjection"]["name"], "carts");
    server.stop().await;
}

on_both_backends!(customers_only_see_their_own, admin_operations_check_the_role_first);

//! The seed article's scenario end to end over HTTP, on both backends: an admin stocks
//! apple and banana, a customer fills a cart, reads it back from the projection with
//! minPosition, looks at it as it was, places the order; fulfilment picks the order up,
//! the customer is notified, the admin ships it.

use std::time::Duration;

use crate::support::{add_item, create_cart, eventually, gql_data, register_product, spawn_server};
use api::auth::Role;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

const CART_FIELDS: &str = "id customerId status version itemCount orderId createdAt updatedAt
    subtotal { amount currencyCode }
    lines { sku name quantity unitPrice { amount } lineTotal { amount } }";

async fn seed_scenario(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);

    // The catalog: registering appends ProductRegistered, plus StockReceived with stock.
    register_product(&server, &admin, "apple", "Apple", "0.50", 100).await;
    let data = gql_data(
        &server,
        Some(&admin),
        "mutation { registerProduct(input: {sku: \"banana\", name: \"Banana\", price: \"0.25\", initialStock: 50}) {
            product { sku name price { amount currencyCode } available version } position } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data["registerProduct"]["product"],
        json!({"sku": "banana", "name": "Banana", "price": {"amount": "0.25", "currencyCode": "USD"}, "available": 50, "version": 2})
    );

    // A cart, filled: payloads show the state right after each command.
    let created = gql_data(
        &server,
        Some(&alice),
        &format!("mutation {{ createCart {{ cart {{ {CART_FIELDS} }} position }} }}"),
        json!({}),
    )
    .await;
    let cart = &created["createCart"]["cart"];
    let cart_id = cart["id"].as_str().expect("cart id").to_owned();
    assert_eq!(cart["customerId"], "alice");
    assert_eq!(cart["status"], "OPEN");
    assert_eq!(cart["version"], 1);
    assert_eq!(cart["lines"], json!([]));
    assert_eq!(cart["subtotal"]["amount"], "0.00");
    assert!(cart["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 UTC: {cart}");

    let added = add_item(&server, &alice, &cart_id, "apple", 3).await;
    assert_eq!(added["cart"], json!({"version": 2, "itemCount": 3}));
    let data = gql_data(
        &server,
        Some(&alice),
        &format!("mutation($input: AddItemToCartInput!) {{ addItemToCart(input: $input) {{ cart {{ {CART_FIELDS} }} position }} }}"),
        json!({"input": {"cartId": cart_id, "sku": "banana", "quantity": 2, "expectedVersion": 2}}),
    )
    .await;
    let payload = &data["addItemToCart"];
    assert_eq!(payload["cart"]["version"], 3);
    assert_eq!(payload["cart"]["subtotal"]["amount"], "2.00");
    assert_eq!(
        payload["cart"]["lines"],
        json!([
            {"sku": "apple", "name": "Apple", "quantity": 3, "unitPrice": {"amount": "0.50"}, "lineTotal": {"amount": "1.50"}},
            {"sku": "banana", "name": "Banana", "quantity": 2, "unitPrice": {"amount": "0.25"}, "lineTotal": {"amount": "0.50"}},
        ])
    );
    let position = payload["position"].as_str().expect("position").to_owned();
    assert!(position.bytes().all(|b| b.is_ascii_digit()), "Position is a digit string: {position}");

    // Reading my own write from the projection.
    let data = gql_data(
        &server,
        Some(&alice),
        &format!("query($id: UUID!, $p: Position) {{ cart(id: $id, minPosition: $p) {{ {CART_FIELDS} }} }}"),
        json!({"id": cart_id, "p": position}),
    )
    .await;
    assert_eq!(data["cart"]["version"], 3);
    assert_eq!(data["cart"]["lines"], payload["cart"]["lines"]);
    assert_eq!(data["cart"]["itemCount"], 5);

    // A later price change does not touch the cart's line.
    gql_data(
        &server,
        Some(&admin),
        "mutation { changeProductPrice(input: {sku: \"apple\", price: \"0.75\"}) { product { version } } }",
        json!({}),
    )
    .await;
    let data = gql_data(
        &server,
        Some(&alice),
        "mutation($input: ChangeItemQuantityInput!) { changeItemQuantity(input: $input) { cart { version lines { sku quantity unitPrice { amount } } } } }",
        json!({"input": {"cartId": cart_id, "sku": "apple", "quantity": 4}}),
    )
    .await;
    assert_eq!(data["changeItemQuantity"]["cart"]["version"], 4);
    assert_eq!(
        data["changeItemQuantity"]["cart"]["lines"][0],
        json!({"sku": "apple", "quantity": 4, "unitPrice": {"amount": "0.50"}})
    );

    // Time travel and the audit trail come from the event store.
    let data = gql_data(
        &server,
        Some(&alice),
        "query($id: UUID!) {
            v2: cartAt(id: $id, version: 2) { version itemCount lines { sku quantity } }
            v0: cartAt(id: $id, version: 0) { version }
            before: cartAt(id: $id, at: \"2000-01-01T00:00:00Z\") { version }
            now: cartAt(id: $id, at: \"2999-01-01T00:00:00Z\") { version itemCount }
        }",
        json!({"id": cart_id}),
    )
    .await;
    assert_eq!(
        data["v2"],
        json!({"version": 2, "itemCount": 3, "lines": [{"sku": "apple", "quantity": 3}]})
    );
    assert_eq!(data["v0"], json!(null));
    assert_eq!(data["before"], json!(null));
    assert_eq!(data["now"], json!({"version": 4, "itemCount": 6}));

    // Checkout.
    let data = gql_data(
        &server,
        Some(&alice),
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
            order { id cartId customerId status version total { amount } placedAt lines { sku quantity unitPrice { amount } lineTotal { amount } } }
            position } }",
        json!({"input": {"cartId": cart_id, "expectedVersion": 4}}),
    )
    .await;
    let order = &data["placeOrder"]["order"];
    let order_id = order["id"].as_str().expect("order id").to_owned();
    assert_eq!(order["status"], "PLACED");
    assert_eq!(order["cartId"], cart_id.as_str());
    assert_eq!(order["customerId"], "alice");
    assert_eq!(order["version"], 1);
    assert_eq!(order["total"]["amount"], "2.50");
    assert_eq!(
        order["lines"][0],
        json!({"sku": "apple", "quantity": 4, "unitPrice": {"amount": "0.50"}, "lineTotal": {"amount": "2.00"}})
    );
    let order_position = data["placeOrder"]["position"].as_str().expect("position").to_owned();

    // The cart is checked out, with exactly one more event, and its history says so.
    let data = gql_data(
        &server,
        Some(&alice),
        "query($id: UUID!, $p: Position) { cart(id: $id, minPosition: $p) {
            status orderId version
            history { edges { cursor node { __typename version actor position occurredAt
                ... on CartCreated { customerId }
                ... on ItemAddedToCart { sku quantity unitPrice { amount } }
                ... on ItemQuantityChanged { sku quantity }
                ... on CartCheckedOut { orderId } } }
              pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }",
        json!({"id": cart_id, "p": order_position}),
    )
    .await;
    let cart = &data["cart"];
    assert_eq!(cart["status"], "CHECKED_OUT");
    assert_eq!(cart["orderId"], order_id.as_str());
    assert_eq!(cart["version"], 5);
    let history: Vec<&serde_json::Value> = cart["history"]["edges"].as_array().expect("edges").iter().map(|e| &e["node"]).collect();
    let kinds: Vec<&str> = history.iter().map(|n| n["__typename"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        kinds,
        [
            "CartCreated",
            "ItemAddedToCart",
            "ItemAddedToCart",
            "ItemQuantityChanged",
            "CartCheckedOut"
        ]
    );
    assert!(history.iter().all(|n| n["actor"] == "alice"), "{history:?}");
    assert_eq!(
        history.iter().map(|n| n["version"].as_i64().unwrap_or_default()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let positions: Vec<u64> = history
        .iter()
        .map(|n| n["position"].as_str().and_then(|p| p.parse().ok()).expect("position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");
    assert_eq!(history[0]["customerId"], "alice");
    assert_eq!(history[1]["unitPrice"]["amount"], "0.50");
    assert_eq!(history[4]["orderId"], order_id.as_str());
    assert_eq!(
        cart["history"]["pageInfo"],
        json!({"hasNextPage": false, "hasPreviousPage": false, "startCursor": "1", "endCursor": "5"})
    );

    // Paging the history.
    let data = gql_data(
        &server,
        Some(&alice),
        "query($id: UUID!, $after: String) { cart(id: $id) { history(first: 2, after: $after) {
            nodes { version } pageInfo { hasNextPage hasPreviousPage endCursor } } } }",
        json!({"id": cart_id, "after": "2"}),
    )
    .await;
    assert_eq!(
        data["cart"]["history"],
        json!({"nodes": [{"version": 3}, {"version": 4}], "pageInfo": {"hasNextPage": true, "hasPreviousPage": true, "endCursor": "4"}})
    );

    // Fulfilment reacts: the order moves to PREPARING; the notification projection tells alice.
    let order_query = "query($id: UUID!) { order(id: $id) { status version } }";
    eventually(WAIT, "fulfilment starts preparing the order", || async {
        let data = gql_data(&server, Some(&alice), order_query, json!({"id": order_id})).await;
        (data["order"]["status"] == "PREPARING").then_some(())
    })
    .await;
    let notifications = eventually(WAIT, "alice is notified of her order", || async {
        let data = gql_data(
            &server,
            Some(&alice),
            "{ me { id notifications { nodes { kind message orderId createdAt } } } }",
            json!({}),
        )
        .await;
        let nodes = data["me"]["notifications"]["nodes"].as_array().cloned().unwrap_or_default();
        nodes
            .iter()
            .any(|n| n["kind"] == "ORDER_PLACED" && n["orderId"] == order_id.as_str())
            .then_some(nodes)
    })
    .await;
    assert!(notifications.iter().all(|n| n["message"].as_str().is_some_and(|m| !m.is_empty())));

    // Stock is reserved (available = on hand - reserved).
    eventually(WAIT, "the product read model shows the reservation", || async {
        let data = gql_data(
            &server,
            None,
            "{ apple: product(sku: \"apple\") { available } banana: product(sku: \"banana\") { available } }",
            json!({}),
        )
        .await;
        (data["apple"]["available"] == 96 && data["banana"]["available"] == 48).then_some(())
    })
    .await;

    // The admin ships it; alice sees it in her orders.
    let data = gql_data(
        &server,
        Some(&admin),
        "mutation($input: ShipOrderInput!) { shipOrder(input: $input) { order { status version } position } }",
        json!({"input": {"orderId": order_id}}),
    )
    .await;
    assert_eq!(data["shipOrder"]["order"], json!({"status": "SHIPPED", "version": 3}));
    let shipped_at = data["shipOrder"]["position"].as_str().expect("position").to_owned();
    let data = gql_data(
        &server,
        Some(&alice),
        "query($id: UUID!, $p: Position) { order(id: $id, minPosition: $p) { status } }",
        json!({"id": order_id, "p": shipped_at}),
    )
    .await;
    assert_eq!(data["order"]["status"], "SHIPPED");
    let data = gql_data(
        &server,
        Some(&alice),
        "{ me { orders { nodes { id status } pageInfo { hasNextPage } } } }",
        json!({}),
    )
    .await;
    assert_eq!(data["me"]["orders"]["nodes"], json!([{"id": order_id, "status": "SHIPPED"}]));
    eventually(WAIT, "alice is told her order shipped", || async {
        let data = gql_data(&server, Some(&alice), "{ me { notifications { nodes { kind orderId } } } }", json!({})).await;
        let nodes = data["me"]["notifications"]["nodes"].as_array().cloned().unwrap_or_default();
        nodes.iter().any(|n| n["kind"] == "ORDER_SHIPPED").then_some(())
    })
    .await;

    // The catalog, paged.
    let data = gql_data(
        &server,
        None,
        "{ products(first: 1) { edges { cursor node { sku } } pageInfo { hasNextPage endCursor } } }",
        json!({}),
    )
    .await;
    assert_eq!(data["products"]["edges"][0]["node"]["sku"], "apple");
    assert_eq!(data["products"]["pageInfo"]["hasNextPage"], true);
    let after = data["products"]["pageInfo"]["endCursor"].clone();
    let data = gql_data(
        &server,
        None,
        "query($after: String) { products(first: 5, after: $after) { nodes { sku price { amount } } pageInfo { hasNextPage hasPreviousPage } } }",
        json!({"after": after}),
    )
    .await;
    assert_eq!(
        data["products"],
        json!({"nodes": [{"sku": "banana", "price": {"amount": "0.25"}}], "pageInfo": {"hasNextPage": false, "hasPreviousPage": true}})
    );
    server.stop().await;
}

/// `me.carts`: newest first, filtered by status, paged with cursors.
async fn my_carts_are_paged(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let bob = server.token("bob", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = create_cart(&server, &bob).await;
        add_item(&server, &bob, &id, "apple", 1).await;
        ids.push(id);
    }
    let placed = gql_data(
        &server,
        Some(&bob),
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { position } }",
        json!({"input": {"cartId": ids[0]}}),
    )
    .await;
    let placed_at = placed["placeOrder"]["position"].as_str().expect("position").to_owned();
    // Wait for the carts projection through a read that takes minPosition.
    gql_data(
        &server,
        Some(&bob),
        "query($id: UUID!, $p: Position) { cart(id: $id, minPosition: $p) { id } }",
        json!({"id": ids[0], "p": placed_at}),
    )
    .await;

    let page = |after: Option<String>, status: Option<&str>| {
        let server = &server;
        let bob = bob.clone();
        let status = status.map(str::to_owned);
        async move {
            gql_data(
                server,
                Some(&bob),
                "query($after: String, $status: CartStatus) { me { id carts(first: 2, after: $after, status: $status) {
                    edges { cursor node { id status } } pageInfo { hasNextPage hasPreviousPage endCursor } } } }",
                json!({"after": after, "status": status}),
            )
            .await
        }
    };
    let first = page(None, None).await;
    assert_eq!(first["me"]["id"], "bob");
    let edges = first["me"]["carts"]["edges"].as_array().expect("edges").clone();
    let got: Vec<&str> = edges.iter().map(|e| e["node"]["id"].as_str().unwrap_or_default()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()], "newest first");
    assert_eq!(first["me"]["carts"]["pageInfo"]["hasNextPage"], true);
    let after = first["me"]["carts"]["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    let second = page(after, None).await;
    let edges = second["me"]["carts"]["edges"].as_array().expect("edges").clone();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"], json!({"id": ids[0], "status": "CHECKED_OUT"}));
    assert_eq!(second["me"]["carts"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(second["me"]["carts"]["pageInfo"]["hasPreviousPage"], true);

    let open = page(None, Some("OPEN")).await;
    assert_eq!(open["me"]["carts"]["edges"].as_array().map(Vec::len), Some(2));
    let checked_out = page(None, Some("CHECKED_OUT")).await;
    assert_eq!(checked_out["me"]["carts"]["edges"][0]["node"]["id"], ids[0].as_str());
    server.stop().await;
}

/// `me.carts` with each cart's `history`: the histories of one page are read in one
/// batch (the history DataLoader) and every cart still gets its own events and paging.
async fn a_page_of_carts_shows_each_carts_history(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let bob = server.token("bob", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 100).await;
    // Cart i gets i + 1 adds, so the carts have 2, 3 and 4 events.
    let mut ids = Vec::new();
    let mut last = String::new();
    for i in 0..3 {
        let id = create_cart(&server, &bob).await;
        for _ in 0..=i {
            let added = add_item(&server, &bob, &id, "apple", 1).await;
            last = added["position"].as_str().unwrap_or_default().to_owned();
        }
        ids.push(id);
    }
    assert!(!last.is_empty(), "addItem returns a position");
    // Wait for the carts projection through a read that takes minPosition.
    gql_data(
        &server,
        Some(&bob),
        "query($id: UUID!, $p: Position) { cart(id: $id, minPosition: $p) { id } }",
        json!({"id": ids[2], "p": last}),
    )
    .await;
    let query = "{ me { carts(first: 20) { nodes { id version history(first: 3) { edges { cursor node { __typename version } }
            pageInfo { hasNextPage endCursor } } } } } }";
    let data = gql_data(&server, Some(&bob), query, json!({})).await;
    let nodes = data["me"]["carts"]["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 3, "{data}");
    for node in &nodes {
        let index = ids
            .iter()
            .position(|id| node["id"] == id.as_str())
            .unwrap_or_else(|| panic!("unknown cart {node}"));
        let version = index as i64 + 2;
        assert_eq!(node["version"], version, "{node}");
        let edges = node["history"]["edges"].as_array().expect("edges");
        let versions: Vec<i64> = edges.iter().map(|e| e["node"]["version"].as_i64().unwrap_or_default()).collect();
        let expected: Vec<i64> = (1..=version.min(3)).collect();
        assert_eq!(versions, expected, "{node}");
        assert_eq!(edges[0]["node"]["__typename"], "CartCreated", "{node}");
        assert!(edges[1..].iter().all(|e| e["node"]["__typename"] == "ItemAddedToCart"), "{node}");
        assert_eq!(node["history"]["pageInfo"]["hasNextPage"], version > 3, "{node}");
    }
    // The next page of the longest history, through the same nested field.
    let after = nodes
        .iter()
        .find(|n| n["version"] == 4)
        .and_then(|n| n["history"]["pageInfo"]["endCursor"].as_str())
        .expect("end cursor")
        .to_owned();
    let data = gql_data(
        &server,
        Some(&bob),
        "query($after: String) { me { carts(first: 20) { nodes { id history(first: 3, after: $after) { edges { node { version } } pageInfo { hasNextPage hasPreviousPage } } } } } }",
        json!({"after": after}),
    )
    .await;
    let longest = data["me"]["carts"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == ids[2].as_str())
        .expect("cart")
        .clone();
    assert_eq!(
        longest["history"],
        json!({"edges": [{"node": {"version": 4}}], "pageInfo": {"hasNextPage": false, "hasPreviousPage": true}})
    );
    server.stop().await;
}

on_both_backends!(seed_scenario, my_carts_are_paged, a_page_of_carts_shows_each_carts_history);

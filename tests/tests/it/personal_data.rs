//! Personal data end to end (#15): given with an order, validated, shown to its owner, and
//! after an erasure gone from every read path (queries, the live order, notifications,
//! the global feed, a rebuilt read model, the bus) while other customers keep theirs. No
//! plaintext ever reaches the database: the raw rows (every table; on SQLite the file
//! itself) are searched before and after.

use std::time::Duration;

use api::auth::Role;
use serde_json::{json, Value};

use crate::support::*;

const ADA: [&str; 4] = ["Lovelace", "ada@example.org", "SW1Y 4JH", "St James"];
const BOB: [&str; 2] = ["Babbage", "bob@example.org"];

fn address(name: &str, line1: &str, postal_code: &str) -> Value {
    json!({"name": name, "line1": line1, "city": "London", "postalCode": postal_code, "country": "gb"})
}

const ORDER_FIELDS: &str = "id customerId personalDataErased contactEmail shippingAddress { name line1 line2 city postalCode country }";

/// Places an order for a fresh cart of `token`'s customer; returns the order.
async fn place(server: &TestServer, token: &str, personal: Value) -> Value {
    let cart = create_cart(server, token).await;
    add_item(server, token, &cart, "tea", 1).await;
    let mut input = json!({"cartId": cart});
    input.as_object_mut().unwrap().extend(personal.as_object().unwrap().clone());
    let query = format!("mutation($input: PlaceOrderInput!) {{ placeOrder(input: $input) {{ order {{ {ORDER_FIELDS} }} position }} }}");
    gql_data(server, Some(token), &query, json!({"input": input})).await["placeOrder"].clone()
}

async fn order(server: &TestServer, token: &str, id: &str, min_position: Option<&str>) -> Value {
    let query = format!("query($id: UUID!, $min: Position) {{ order(id: $id, minPosition: $min) {{ {ORDER_FIELDS} }} }}");
    gql_data(server, Some(token), &query, json!({"id": id, "min": min_position})).await["order"].clone()
}

/// The customer's notifications once `ready` holds for them (the notifications read model
/// has no minPosition).
async fn notifications(server: &TestServer, token: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let query = "{ me { notifications { nodes { kind sentTo } } } }";
    eventually(Duration::from_secs(20), "the notifications are as expected", || async {
        let nodes = gql_data(server, Some(token), query, json!({})).await["me"]["notifications"]["nodes"].clone();
        let nodes = nodes.as_array().cloned().unwrap_or_default();
        ready(&nodes).then_some(nodes)
    })
    .await
}

/// Every row of every table as text (Postgres), or the database files' bytes (SQLite:
/// what a stolen disk would show, free pages included).
async fn raw_database(database_url: &str) -> String {
    if database_url.starts_with("sqlite:") {
        let path = store::sqlite::database_file(database_url).expect("a file database");
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            bytes.extend(std::fs::read(&file).unwrap_or_default());
        }
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    let pool = store::PgPool::connect(database_url).await.expect("connect");
    let tables: Vec<String> = sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public'")
        .fetch_all(&pool)
        .await
        .expect("tables");
    let mut all = String::new();
    for table in tables {
        // Names from the catalog, not from input.
        let rows: String = sqlx::query_scalar(&format!("select coalesce(string_agg(t::text, E'\\n'), '') from \"{table}\" t"))
            .fetch_one(&pool)
            .await
            .expect("rows");
        all.push_str(&rows);
    }
    pool.close().await;
    all
}

fn assert_absent(text: &str, plaintext: &[&str], where_: &str) {
    for p in plaintext {
        assert!(!text.contains(p), "{p:?} found in {where_}");
    }
}

async fn personal_data_is_sealed_shown_to_its_owner_and_erased_everywhere(database_url: String) {
    let server = spawn_server(database_url.clone()).await;
    let (admin, ada, bob) = (
        server.token("admin", Role::Admin),
        server.token("ada", Role::Customer),
        server.token("bob", Role::Customer),
    );
    register_product(&server, &admin, "tea", "Tea", "4.50", 100).await;

    // Invalid input is refused with the field, and nothing is written.
    let cart = create_cart(&server, &ada).await;
    add_item(&server, &ada, &cart, "tea", 1).await;
    for (input, field) in [
        (
            json!({"shippingAddress": address("Ada", "1 Road", "1").as_object().unwrap().clone().into_iter().chain([("country".to_owned(), json!("XX"))]).collect::<serde_json::Map<_, _>>()}),
            "shippingAddress.country",
        ),
        (json!({"shippingAddress": address(" ", "1 Road", "1")}), "shippingAddress.name"),
        (json!({"contactEmail": "ada at example"}), "contactEmail"),
    ] {
        let mut input = input;
        input["cartId"] = json!(cart);
        let error = gql_error(
            &server,
            Some(&ada),
            "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { position } }",
            json!({"input": input}),
        )
        .await;
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{error}");
        assert_eq!(error["extensions"]["field"], field, "{error}");
    }
    let cart_now = gql_data(
        &server,
        Some(&ada),
        "query($id: UUID!) { cart(id: $id) { status version } }",
        json!({"id": cart}),
    )
    .await;
    assert_eq!(cart_now["cart"]["status"], "OPEN", "a refused order checks nothing out");

    // Old clients: no personal data at all.
    let plain = place(&server, &ada, json!({})).await;
    assert_eq!(plain["order"]["shippingAddress"], Value::Null);
    assert_eq!(plain["order"]["personalDataErased"], false);

    let ada_order = place(
        &server,
        &ada,
        json!({"shippingAddress": address("Ada Lovelace", "12 St James's Square", "SW1Y 4JH"), "contactEmail": "ada@example.org"}),
    )
    .await;
    assert_eq!(ada_order["order"]["shippingAddress"]["country"], "GB");
    assert_eq!(ada_order["order"]["contactEmail"], "ada@example.org");
    let bob_order = place(
        &server,
        &bob,
        json!({"shippingAddress": address("Charles Babbage", "1 Dorset Street", "W1U 4EG"), "contactEmail": "bob@example.org"}),
    )
    .await;
    let (ada_id, bob_id) = (
        ada_order["order"]["id"].as_str().unwrap().to_owned(),
        bob_order["order"]["id"].as_str().unwrap().to_owned(),
    );
    let placed_at = bob_order["position"].as_str().unwrap().to_owned();

    let read = order(&server, &ada, &ada_id, Some(&placed_at)).await;
    assert_eq!(read["shippingAddress"]["name"], "Ada Lovelace");
    assert_eq!(read["shippingAddress"]["line2"], Value::Null);
    notifications(&server, &ada, |told| told.iter().any(|n| n["sentTo"] == "ada@example.org")).await;
    let others = gql_data(
        &server,
        Some(&bob),
        &format!("{{ order(id: \"{ada_id}\") {{ contactEmail }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(others["order"], Value::Null, "another customer's order is not there for Bob");

    // The database never held the plaintext, not even before erasure.
    let raw = raw_database(&database_url).await;
    assert_absent(&raw, &ADA, "the database before erasure");
    assert_absent(&raw, &BOB, "the database before erasure");

    // Only the customer themself, or an admin.
    let erase_ada = "mutation { erasePersonalData(customerId: \"ada\") { customerId erasedAt position } }";
    assert_eq!(gql_error_code(&server, Some(&bob), erase_ada, json!({})).await, "FORBIDDEN");
    assert_eq!(
        gql_error_code(&server, None, "mutation { eraseMyPersonalData { erasedAt } }", json!({})).await,
        "UNAUTHENTICATED"
    );
    let empty = "mutation { erasePersonalData(customerId: \" \") { erasedAt } }";
    assert_eq!(gql_error_code(&server, Some(&admin), empty, json!({})).await, "BAD_USER_INPUT");
    let long = "mutation($id: String!) { erasePersonalData(customerId: $id) { erasedAt } }";
    let too_long = json!({"id": "x".repeat(store::event::MAX_STREAM_ID_LEN)});
    assert_eq!(gql_error_code(&server, Some(&admin), long, too_long).await, "BAD_USER_INPUT");

    // A live view of Ada's order, open across the erasure.
    let mut live = subscribe(
        &server,
        &ada,
        &format!("subscription($id: UUID!) {{ orderChanged(orderId: $id) {{ {ORDER_FIELDS} }} }}"),
        json!({"id": ada_id}),
    )
    .await;
    assert_eq!(
        live.next(Duration::from_secs(10)).await["data"]["orderChanged"]["contactEmail"],
        "ada@example.org"
    );

    let erased = gql_data(
        &server,
        Some(&ada),
        "mutation { eraseMyPersonalData { customerId erasedAt position } }",
        json!({}),
    )
    .await["eraseMyPersonalData"]
        .clone();
    assert_eq!(erased["customerId"], "ada");
    let again = gql_data(&server, Some(&admin), erase_ada, json!({})).await["erasePersonalData"].clone();
    assert_eq!(again, erased, "erasing again answers the first erasure");
    let position = erased["position"].as_str().unwrap().to_owned();

    // At once, before any read model has seen the erasure: the key is gone.
    let now = order(&server, &ada, &ada_id, None).await;
    assert_eq!(
        (&now["shippingAddress"], &now["contactEmail"], &now["personalDataErased"]),
        (&Value::Null, &Value::Null, &json!(true))
    );
    // And the read models once they have.
    let caught_up = order(&server, &ada, &ada_id, Some(&position)).await;
    assert_eq!(caught_up["personalDataErased"], true);
    assert_eq!(caught_up["shippingAddress"], Value::Null);
    let untouched_plain = order(&server, &ada, plain["order"]["id"].as_str().unwrap(), Some(&position)).await;
    assert_eq!(
        untouched_plain["personalDataErased"], true,
        "every order placed before the erasure is marked"
    );
    notifications(&server, &ada, |told| told.len() >= 2 && told.iter().all(|n| n["sentTo"].is_null())).await;
    let bobs = order(&server, &bob, &bob_id, Some(&position)).await;
    assert_eq!(
        (&bobs["contactEmail"], &bobs["personalDataErased"]),
        (&json!("bob@example.org"), &json!(false)),
        "other customers keep theirs"
    );

    // The live order, on its next change.
    gql_data(
        &server,
        Some(&ada),
        "mutation($id: UUID!) { cancelOrder(input: {orderId: $id}) { position } }",
        json!({"id": ada_id}),
    )
    .await;
    let changed = live.next(Duration::from_secs(10)).await["data"]["orderChanged"].clone();
    assert_eq!(
        (&changed["contactEmail"], &changed["personalDataErased"]),
        (&Value::Null, &json!(true)),
        "{changed}"
    );

    // The global feed and the order's own history carry only ciphertext.
    let mut feed = subscribe(
        &server,
        &admin,
        "subscription { events(categories: [\"order\", \"customer\"]) { streamId type data } }",
        json!({}),
    )
    .await;
    let mut feed_text = String::new();
    while !feed_text.contains("PersonalDataErased") {
        feed_text.push_str(&feed.next(Duration::from_secs(10)).await.to_string());
    }
    let history = gql_data(
        &server,
        Some(&admin),
        "query($s: String!) { streamEvents(streamId: $s) { type data } }",
        json!({"s": format!("order-{ada_id}")}),
    )
    .await;
    assert!(
        history.to_string().contains("\"personal_data\":\"v1."),
        "the order's history holds the sealed data: {history}"
    );
    feed_text.push_str(&history.to_string());
    assert_absent(&feed_text, &ADA, "the events feed");
    assert_absent(&feed_text, &BOB, "the events feed");

    // A rebuild after the erasure shows nothing either.
    let rebuilt = gql_data(
        &server,
        Some(&admin),
        "mutation { rebuildProjection(name: \"orders\") { name } }",
        json!({}),
    )
    .await;
    assert_eq!(rebuilt["rebuildProjection"]["name"], "orders");
    eventually(Duration::from_secs(20), "the orders read model is rebuilt", || async {
        let status = gql_data(&server, Some(&admin), "{ projections { name state position headPosition } }", json!({})).await;
        let orders = status["projections"].as_array()?.iter().find(|p| p["name"] == "orders")?.clone();
        (orders["state"] == "RUNNING" && orders["position"] == orders["headPosition"]).then_some(())
    })
    .await;
    let after_rebuild = order(&server, &ada, &ada_id, Some(&position)).await;
    assert_eq!(
        (&after_rebuild["shippingAddress"], &after_rebuild["personalDataErased"]),
        (&Value::Null, &json!(true))
    );
    assert_eq!(order(&server, &bob, &bob_id, Some(&position)).await["contactEmail"], "bob@example.org");

    let raw = raw_database(&database_url).await;
    assert_absent(&raw, &ADA, "the database after erasure");
    assert_absent(&raw, &BOB, "the database after erasure");
    server.stop().await;
}

/// What the bus carries is the event as stored: sealed personal data, no plaintext.
async fn the_bus_carries_only_sealed_personal_data(database_url: String) {
    use async_nats::jetstream::{self, consumer};
    use futures::StreamExt;

    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut config = test_config(database_url);
    config.nats_url = Some(store::testing::nats_url());
    config.bus_names = api::config::BusNames {
        nats_stream: format!("CS_PD_{tag}"),
        nats_subject_prefix: format!("cspd{tag}"),
    };
    let server = spawn_server_with(config).await;
    let (admin, ada) = (server.token("admin", Role::Admin), server.token("ada", Role::Customer));
    register_product(&server, &admin, "tea", "Tea", "4.50", 10).await;
    place(
        &server,
        &ada,
        json!({"shippingAddress": address("Ada Lovelace", "12 St James's Square", "SW1Y 4JH"), "contactEmail": "ada@example.org"}),
    )
    .await;

    let js = jetstream::new(async_nats::connect(store::testing::nats_url()).await.expect("connect to NATS"));
    let placed: Value = eventually(Duration::from_secs(20), "OrderPlaced is published", || async {
        let stream = js.get_stream(format!("CS_PD_{tag}")).await.ok()?;
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .ok()?;
        let mut batch = consumer.fetch().max_messages(100).messages().await.ok()?;
        while let Some(Ok(message)) = batch.next().await {
            let body: Value = serde_json::from_slice(&message.payload).ok()?;
            if body.to_string().contains("OrderPlaced") {
                return Some(body);
            }
        }
        None
    })
    .await;
    let text = placed.to_string();
    assert_absent(&text, &ADA, "the bus message");
    assert!(text.contains("\"personal_data\":\"v1."), "the sealed data travels: {text}");
    let _ = js.delete_stream(format!("CS_PD_{tag}")).await;
    server.stop().await;
}

on_both_backends!(
    personal_data_is_sealed_shown_to_its_owner_and_erased_everywhere,
    the_bus_carries_only_sealed_personal_data
);

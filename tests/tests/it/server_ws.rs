//! The WebSocket transport, black-box with real clients: graphql-ws-client (the
//! graphql-transport-ws protocol) and raw tungstenite for the corners (legacy protocol,
//! refused inits, limits, shutdown).

use std::future::IntoFuture;
use std::time::Duration;

use crate::support::{
    post_graphql, spawn_server, spawn_server_with, test_config, ws_connect, ws_expect_close, ws_next_json, ws_next_with, ws_send, RawOperation,
    TestServer, Ws, WsEvent,
};
use api::auth::Role;
use futures::StreamExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const EVENTS: &str = "subscription($categories: [String!]) { events(categories: $categories) { streamId type } }";

/// Registers a new product as admin; returns its stream id.
async fn register_product(server: &TestServer) -> String {
    let sku = format!("kiwi-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = post_graphql(
        server,
        Some(&server.token("root", Role::Admin)),
        "mutation($sku: String!) { registerProduct(input: {sku: $sku, name: \"Kiwi\", price: \"0.80\"}) { position } }",
        json!({"sku": sku}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    format!("product-{sku}")
}

/// Subscribes (as `id`) to the product events of the log, registers a product and waits
/// for its event.
async fn follow_new_products(ws: &mut Ws, server: &TestServer, id: &str) {
    ws_send(
        ws,
        json!({"id": id, "type": "subscribe", "payload": {"query": EVENTS, "variables": {"categories": ["product"]}}}),
    )
    .await;
    let stream_id = register_product(server).await;
    until_event_of(ws, id, &stream_id).await;
}

/// Reads `next`/`data` messages for subscription `id` until one names `stream_id`.
async fn until_event_of(ws: &mut Ws, id: &str, stream_id: &str) {
    loop {
        let message = ws_next_json(ws, WAIT).await;
        assert!(message["type"] == "next" || message["type"] == "data", "{message}");
        assert_eq!(message["id"], id);
        assert!(message["payload"]["errors"].is_null(), "{message}");
        if message["payload"]["data"]["events"]["streamId"] == stream_id {
            return;
        }
    }
}

/// graphql-transport-ws handshake with an optional connection_init payload.
async fn init(ws: &mut Ws, payload: Value) {
    ws_send(ws, json!({"type": "connection_init", "payload": payload})).await;
    let ack = ws_next_json(ws, WAIT).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
}

async fn auth_in_connection_init_with_graphql_ws_client(url: String) {
    let server = spawn_server(url).await;
    let socket = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    let (client, actor) = graphql_ws_client::Client::build(socket)
        .payload(json!({"Authorization": format!("Bearer {}", server.token("root", Role::Admin))}))
        .expect("payload")
        .build()
        .await
        .expect("connection_ack");
    tokio::spawn(actor.into_future());
    let mut events = client
        .subscribe(RawOperation {
            query: EVENTS.to_owned(),
            variables: json!({"categories": ["product"]}),
        })
        .await
        .expect("subscribe");
    let stream_id = register_product(&server).await;
    loop {
        let item = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("a response");
        assert!(item["errors"].is_null(), "{item}");
        if item["data"]["events"]["streamId"] == stream_id.as_str() {
            break;
        }
    }
    // `token` is accepted as well.
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    init(&mut ws, json!({"token": server.token("root", Role::Admin)})).await;
    follow_new_products(&mut ws, &server, "1").await;
}

async fn auth_in_the_upgrade_header(url: String) {
    let server = spawn_server(url).await;
    let bearer = format!("Bearer {}", server.token("root", Role::Admin));
    let mut ws = ws_connect(&server, "graphql-transport-ws", Some(&bearer)).await.expect("connect");
    init(&mut ws, json!({})).await;
    follow_new_products(&mut ws, &server, "a").await;

    // A bad header token is refused before the upgrade.
    match ws_connect(&server, "graphql-transport-ws", Some("Bearer garbage")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
}

async fn anonymous_and_customers_cannot_follow_the_log(url: String) {
    let server = spawn_server(url).await;
    for (payload, code) in [
        (json!({}), "UNAUTHENTICATED"),
        (
            json!({"Authorization": format!("Bearer {}", server.token("alice", Role::Customer))}),
            "FORBIDDEN",
        ),
    ] {
        let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
        init(&mut ws, payload).await;
        ws_send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})).await;
        let message = ws_next_json(&mut ws, WAIT).await;
        assert_eq!(subscription_error_codes(&message), [code], "{message}");
    }
}

/// The codes of a subscription's first answer: an `error` message, or a `next` with errors.
fn subscription_error_codes(message: &Value) -> Vec<String> {
    let errors = if message["type"] == "error" {
        &message["payload"]
    } else {
        &message["payload"]["errors"]
    };
    errors
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

async fn a_log_filter_of_too_many_categories_is_bad_input(url: String) {
    let server = spawn_server(url).await;
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    init(&mut ws, json!({"Authorization": format!("Bearer {}", server.token("ops", Role::Admin))})).await;
    let categories: Vec<String> = (0..=store::MAX_FEED_CATEGORIES).map(|i| format!("c{i}")).collect();
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": EVENTS, "variables": {"categories": categories}}}),
    )
    .await;
    let message = ws_next_json(&mut ws, WAIT).await;
    assert_eq!(subscription_error_codes(&message), ["BAD_USER_INPUT"], "{message}");
    if message["type"] == "next" {
        let done = ws_next_json(&mut ws, WAIT).await;
        assert_eq!((&done["id"], &done["type"]), (&json!("1"), &json!("complete")), "{done}");
    }
    // The connection stays usable: the same filter within the limit subscribes.
    follow_new_products(&mut ws, &server, "2").await;
}

async fn refused_init_closes_the_socket(url: String) {
    let server = spawn_server(url).await;
    let forged = api::auth::issue_token("alice", Role::Admin, Duration::from_secs(60), b"not the server's secret").expect("token");
    for payload in [json!({"Authorization": format!("Bearer {forged}")}), json!({"token": "garbage"})] {
        let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
        ws_send(&mut ws, json!({"type": "connection_init", "payload": payload})).await;
        let (code, reason) = ws_expect_close(&mut ws, WAIT).await;
        assert_eq!(code, Some(4403), "{reason}");
        assert!(reason.starts_with("Forbidden"), "{reason}");
    }
    // The legacy protocol hears why first.
    let mut ws = ws_connect(&server, "graphql-ws", None).await.expect("connect");
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": "Bearer garbage"}}),
    )
    .await;
    let error = ws_next_json(&mut ws, WAIT).await;
    assert_eq!(error["type"], "connection_error", "{error}");
    assert_eq!(error["payload"]["extensions"]["code"], "UNAUTHENTICATED");
    let (code, _) = ws_expect_close(&mut ws, WAIT).await;
    assert_eq!(code, Some(4403));
}

async fn init_must_come_first_and_in_time(url: String) {
    let mut config = test_config(url);
    config.limits.ws_init_timeout = Duration::from_secs(1);
    let server = spawn_server_with(config).await;
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    let (code, reason) = ws_expect_close(&mut ws, WAIT).await;
    assert_eq!(code, Some(4408), "{reason}");
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    ws_send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})).await;
    let (code, reason) = ws_expect_close(&mut ws, WAIT).await;
    assert_eq!(code, Some(4401), "{reason}");
}

async fn subscriptions_per_connection_are_capped(url: String) {
    let mut config = test_config(url);
    config.limits.ws_max_subscriptions = 2;
    let server = spawn_server_with(config).await;
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    init(&mut ws, json!({"Authorization": format!("Bearer {}", server.token("root", Role::Admin))})).await;
    let subscribe = |id: &str| json!({"id": id, "type": "subscribe", "payload": {"query": EVENTS, "variables": {"categories": ["product"]}}});
    ws_send(&mut ws, subscribe("1")).await;
    ws_send(&mut ws, subscribe("2")).await;
    ws_send(&mut ws, subscribe("3")).await;
    let refused = ws_next_json(&mut ws, WAIT).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "3");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    // The first two keep running.
    let stream_id = register_product(&server).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let message = ws_next_json(&mut ws, WAIT).await;
        assert_eq!(message["type"], "next", "{message}");
        if message["payload"]["data"]["events"]["streamId"] == stream_id.as_str() {
            seen.insert(message["id"].as_str().unwrap_or("").to_owned());
        }
    }
    assert_eq!(seen, ["1".to_owned(), "2".to_owned()].into_iter().collect());
    // Completing one makes room; a duplicate id closes the socket.
    ws_send(&mut ws, json!({"id": "1", "type": "complete"})).await;
    ws_send(&mut ws, subscribe("4")).await;
    let stream_id = register_product(&server).await;
    until_event_of_any(&mut ws, "4", &stream_id).await;
    ws_send(&mut ws, subscribe("4")).await;
    let (code, reason) = ws_expect_close(&mut ws, WAIT).await;
    assert_eq!(code, Some(4409), "{reason}");
}

/// Like `until_event_of`, ignoring other subscriptions' messages.
async fn until_event_of_any(ws: &mut Ws, id: &str, stream_id: &str) {
    loop {
        let message = ws_next_json(ws, WAIT).await;
        if message["id"] == id && message["payload"]["data"]["events"]["streamId"] == stream_id {
            return;
        }
        assert_ne!(message["type"], "error", "{message}");
    }
}

async fn the_legacy_protocol_works(url: String) {
    let server = spawn_server(url).await;
    let mut ws = ws_connect(&server, "graphql-ws", None).await.expect("connect");
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", server.token("root", Role::Admin))}}),
    )
    .await;
    let ack = ws_next_json(&mut ws, WAIT).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws_send(
        &mut ws,
        json!({"id": "7", "type": "start", "payload": {"query": EVENTS, "variables": {"categories": ["product"]}}}),
    )
    .await;
    let stream_id = register_product(&server).await;
    until_event_of(&mut ws, "7", &stream_id).await;
    ws_send(&mut ws, json!({"id": "7", "type": "stop"})).await;
    let complete = ws_next_json(&mut ws, WAIT).await;
    assert_eq!(complete["type"], "complete", "{complete}");
}

async fn keep_alive_pings_and_shutdown_closes(url: String) {
    let mut config = test_config(url);
    config.limits.ws_keepalive = Duration::from_millis(200);
    let server = spawn_server_with(config).await;
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    init(&mut ws, json!({})).await;
    match ws_next_with(&mut ws, WAIT, true).await {
        WsEvent::Ping => {}
        other => panic!("expected a keep-alive ping, got {other:?}"),
    }
    // Shutdown: the socket hears 1001 going away, and the server stops.
    let shutdown = server.shutdown.clone();
    let stopping = tokio::spawn(server.stop());
    let (code, reason) = ws_expect_close(&mut ws, WAIT).await;
    assert_eq!(code, Some(1001), "{reason}");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the server stops in time")
        .expect("stop");
    assert!(shutdown.is_cancelled());
}

async fn connections_per_process_are_capped(url: String) {
    let mut config = test_config(url);
    config.limits.ws_max_connections = 1;
    let server = spawn_server_with(config).await;
    let mut first = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    init(&mut first, json!({})).await;
    match ws_connect(&server, "graphql-transport-ws", None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    // Closing the first frees its place.
    futures::SinkExt::close(&mut first).await.expect("close");
    let (_, _) = ws_expect_close(&mut first, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match ws_connect(&server, "graphql-transport-ws", None).await {
            Ok(mut ws) => {
                init(&mut ws, json!({})).await;
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "the place was not freed: {e}"),
        }
        tokio::task::yield_now().await;
    }
}

on_both_backends!(
    connections_per_process_are_capped,
    auth_in_connection_init_with_graphql_ws_client,
    auth_in_the_upgrade_header,
    anonymous_and_customers_cannot_follow_the_log,
    a_log_filter_of_too_many_categories_is_bad_input,
    refused_init_closes_the_socket,
    init_must_come_first_and_in_time,
    subscriptions_per_connection_are_capped,
    the_legacy_protocol_works,
    keep_alive_pings_and_shutdown_closes,
);

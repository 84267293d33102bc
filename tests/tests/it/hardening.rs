//! What production turns off and how it can be turned back on: GraphiQL (its page, its
//! assets, the root's redirect to it), introspection (refused FORBIDDEN over HTTP and
//! WebSocket), `/metrics` on a separate internal listener; and the security headers of
//! every HTML page in both modes.

use std::time::Duration;

use api::config::Role as ServerRole;
use api::Application;
use serde_json::{json, Value};

use crate::graphql_schema::INTROSPECTION;
use crate::support::{error_codes, post_graphql, spawn_server_with, test_config, ws_connect, ws_next_json, ws_send, TestServer};
use crate::web_pages::{assert_page, get, header, production};

const SCHEMA_NAME: &str = "{ __schema { queryType { name } } }";
const TYPE_NAME: &str = r#"{ __type(name: "Cart") { name } }"#;

/// The answer to an introspection query: `Ok(data)` or `Err(codes and message)`.
async fn introspect(server: &TestServer, query: &str) -> Result<Value, (Vec<String>, String)> {
    let (status, body) = post_graphql(server, None, query, json!({})).await;
    assert_eq!(status, 200, "{body}");
    match body.get("errors") {
        None => Ok(body["data"].clone()),
        Some(errors) => Err((error_codes(&body), errors[0]["message"].as_str().unwrap_or("").to_owned())),
    }
}

async fn assert_introspection_refused(server: &TestServer) {
    for query in [SCHEMA_NAME, TYPE_NAME, INTROSPECTION] {
        let (codes, message) = introspect(server, query).await.expect_err("introspection is off");
        assert_eq!(codes, ["FORBIDDEN"], "{query}");
        assert!(message.contains("introspection is turned off"), "{message}");
    }
    // `__typename` is not introspection: clients add it everywhere.
    let data = introspect(server, "{ __typename products(first: 1) { __typename } }")
        .await
        .expect("__typename is answered");
    assert_eq!(data["__typename"], "Query");
}

#[tokio::test]
async fn production_turns_graphiql_and_introspection_off() {
    let server = spawn_server_with(production(false)).await;
    let page = get(&server, "/graphql").await;
    assert_eq!(page.status(), 405, "no GraphiQL page");
    assert_eq!(header(&page, "allow"), "POST");
    let body: Value = page.json().await.expect("JSON");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("GraphiQL is turned off")),
        "{body}"
    );
    for asset in ["graphiql-3.8.3.min.js", "playground-2.js", "playground-1.css"] {
        assert_eq!(get(&server, &format!("/graphql/assets/{asset}")).await.status(), 404, "{asset}");
    }
    assert_introspection_refused(&server).await;

    // The same refusal over WebSocket (graphql-transport-ws).
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_next_json(&mut ws, Duration::from_secs(5)).await["type"], "connection_ack");
    ws_send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": SCHEMA_NAME}})).await;
    let answer = ws_next_json(&mut ws, Duration::from_secs(5)).await;
    let errors = if answer["type"] == "error" {
        &answer["payload"]
    } else {
        &answer["payload"]["errors"]
    };
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{answer}");
    server.stop().await;

    // --introspection alone: tools may introspect, browsers still get no GraphiQL.
    let mut config = production(false);
    config.exposure.introspection = true;
    let server = spawn_server_with(config).await;
    let data = introspect(&server, INTROSPECTION).await.expect("introspection is on");
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
    assert_eq!(get(&server, "/graphql").await.status(), 405);
    assert_eq!(get(&server, "/").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn production_serves_graphiql_with_its_flag_and_development_always() {
    let mut config = production(false);
    config.exposure.graphiql = true;
    let server = spawn_server_with(config).await;
    assert_page(&server, "/graphql", "cartsource GraphiQL").await;
    for asset in ["graphiql-3.8.3.min.js", "playground-1.css"] {
        let response = get(&server, &format!("/graphql/assets/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{asset}");
    }
    // GraphiQL cannot work without introspection, so --graphiql brings it along.
    let data = introspect(&server, INTROSPECTION).await.expect("introspection comes with GraphiQL");
    assert_eq!(data["__schema"]["mutationType"]["name"], "Mutation");
    let root = get(&server, "/").await;
    assert_eq!(root.status(), 307);
    assert_eq!(header(&root, "location"), "/graphql");
    server.stop().await;

    let server = spawn_server_with(test_config(store::testing::sqlite())).await;
    assert_page(&server, "/graphql", "cartsource GraphiQL").await;
    introspect(&server, TYPE_NAME).await.expect("development introspects");
    server.stop().await;
}

/// Every HTML route of each mode carries the same headers (`assert_page`); JSON answers
/// are not sniffed either.
#[tokio::test]
async fn every_html_page_carries_the_security_headers() {
    let development = spawn_server_with(test_config(store::testing::sqlite())).await;
    let mut config = production(true);
    config.exposure.graphiql = true;
    let everything = spawn_server_with(config).await;
    for server in [&development, &everything] {
        assert_page(server, "/", "cartsource storefront").await;
        assert_page(server, "/admin", "cartsource admin console").await;
        assert_page(server, "/graphql", "cartsource GraphiQL").await;
        let response = reqwest::Client::new()
            .post(format!("{}/graphql", server.base_url))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .expect("POST");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let missing = get(server, "/nothing-here").await;
        assert_eq!(missing.status(), 404);
        assert_eq!(header(&missing, "x-content-type-options"), "nosniff");
    }
    development.stop().await;
    everything.stop().await;
}

async fn status_of(url: String) -> u16 {
    reqwest::get(url).await.expect("GET").status().as_u16()
}

/// With `--metrics-addr`, `/metrics` is served there alone; the probes stay public; both
/// listeners stop together.
#[tokio::test]
async fn metrics_listen_on_their_own_address() {
    for role in [ServerRole::All, ServerRole::Worker] {
        let mut config = test_config(store::testing::sqlite());
        config.role = role;
        config.exposure.metrics_addr = Some("127.0.0.1:0".into());
        let app = Application::build(&config).await.expect("start");
        let public = format!("http://{}", app.local_addr().expect("public address"));
        let internal = format!("http://{}", app.metrics_addr().expect("a metrics listener").expect("its address"));
        let shutdown = app.shutdown_token();
        let running = tokio::spawn(app.run_until(std::future::pending()));

        assert_eq!(status_of(format!("{public}/metrics")).await, 404, "{role:?}: not on the public address");
        assert_eq!(status_of(format!("{public}/healthz")).await, 200, "{role:?}");
        assert_eq!(status_of(format!("{public}/readyz")).await, 200, "{role:?}");
        let metrics = reqwest::get(format!("{internal}/metrics")).await.expect("GET internal /metrics");
        assert_eq!(metrics.status(), 200, "{role:?}");
        let text = metrics.text().await.expect("text");
        assert!(text.contains("cartsource_event_store_head_position"), "{role:?}: {text}");
        for path in ["/healthz", "/graphql", "/"] {
            assert_eq!(status_of(format!("{internal}{path}")).await, 404, "{role:?}: only /metrics on {path}");
        }

        shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), running).await.expect("stops within 30 s");
        stopped.expect("server task").expect("both listeners stop cleanly");
        for url in [&public, &internal] {
            assert!(reqwest::get(format!("{url}/healthz")).await.is_err(), "{role:?}: {url} still answers");
        }
    }
}

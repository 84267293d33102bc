//! The HTTP transport around the schema, black-box: probes, GraphiQL served from the
//! binary, metrics, and abuse (oversized and malformed bodies, batches, deep and wide
//! queries, bad tokens, the rate limit) answered with GraphQL-shaped errors while the
//! server stays up.
//!
//! One file (about 600 lines): these tests share one subject, the transport in front of the
//! schema, and its small helpers; each test reads on its own.

use std::time::Duration;

use crate::support::{error_codes, metrics, post_graphql, spawn_server, spawn_server_with, test_config, TestServer};
use api::auth::Role;
use serde_json::{json, Value};

const CATALOG: &str = "{ products(first: 5) { nodes { sku } } }";

async fn still_up(server: &TestServer) {
    let (status, body) = post_graphql(server, None, CATALOG, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["products"]["nodes"].is_array(), "{body}");
}

async fn probes_and_request_ids(url: String) {
    let server = spawn_server(url).await;
    let client = reqwest::Client::new();
    let health = client.get(format!("{}/healthz", server.base_url)).send().await.expect("GET /healthz");
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("x-request-id").is_some(), "every response carries a request id");
    let ready = client
        .get(format!("{}/readyz", server.base_url))
        .header("x-request-id", "probe-1")
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["x-request-id"], "probe-1", "a client's request id is echoed");
    let ready: Value = ready.json().await.expect("JSON readiness");
    assert_eq!(ready["status"], "ready");
    assert!(ready["projections"].as_array().is_some_and(|p| !p.is_empty()), "{ready}");
    let missing = client.get(format!("{}/nope", server.base_url)).send().await.expect("GET /nope");
    assert_eq!(missing.status(), 404);

    // Shutting down makes the process unready before it stops answering.
    let shutdown = server.shutdown.clone();
    server.stop().await;
    assert!(shutdown.is_cancelled());
}

async fn graphiql_is_served_without_external_urls(url: String) {
    let server = spawn_server(url).await;
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{}/graphql", server.base_url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap_or("").starts_with("text/html"));
    let html = page.text().await.expect("page");
    assert!(html.contains("graphiql"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//unpkg") && !html.contains("//cdn"),
        "no external URLs: {html}"
    );
    let assets: Vec<&str> = html.split('"').filter(|part| part.starts_with("/graphql/assets/")).collect();
    assert_eq!(assets.len(), 6, "{assets:?}");
    for asset in assets {
        let response = client.get(format!("{}{asset}", server.base_url)).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
        let content_type = response.headers()["content-type"].to_str().unwrap_or("").to_owned();
        assert!(
            content_type.starts_with("text/javascript") || content_type.starts_with("text/css"),
            "{asset}: {content_type}"
        );
        let bytes = response.bytes().await.expect("asset body");
        assert!(!bytes.is_empty(), "{asset}");
    }
    let wiring = client
        .get(format!("{}/graphql/assets/playground-2.js", server.base_url))
        .send()
        .await
        .expect("wiring")
        .text()
        .await
        .expect("text");
    assert!(
        wiring.contains("/graphql/ws") && wiring.contains("subscriptionUrl"),
        "GraphiQL is wired for subscriptions"
    );
    let unknown = client
        .get(format!("{}/graphql/assets/evil.js", server.base_url))
        .send()
        .await
        .expect("unknown asset");
    assert_eq!(unknown.status(), 404);

    // Not a browser: GET never executes operations.
    let get = client
        .get(format!("{}/graphql?query={{__typename}}", server.base_url))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 405);
    let body: Value = get.json().await.expect("JSON");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"]);
}

async fn metrics_are_exposed(url: String) {
    let server = spawn_server(url).await;
    still_up(&server).await;
    let admin = server.token("root", Role::Admin);
    let (status, body) = post_graphql(
        &server,
        Some(&admin),
        "mutation($sku: String!) { registerProduct(input: {sku: $sku, name: \"Pear\", price: \"1.20\", initialStock: 3}) { position } }",
        json!({"sku": format!("pear-{}", uuid::Uuid::new_v4().simple())}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    // A named operation alone in its document needs no operationName to be labelled.
    let customer = server.token("alice", Role::Customer);
    let (status, body) = post_graphql(&server, Some(&customer), "query WhoAmI { me { id } }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let text = metrics(&server).await;
    for name in [
        "cartsource_graphql_requests_total",
        "cartsource_graphql_request_duration_seconds_bucket",
        "cartsource_commands_total",
        "cartsource_appends_total",
        "cartsource_events_appended_total",
        "cartsource_event_store_head_position",
        "cartsource_projection_position",
        "cartsource_projection_lag_events",
        "cartsource_websocket_connections",
        "cartsource_websocket_subscriptions",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(text.contains(r#"operation="products""#), "requests are labelled by root field");
    assert!(text.contains(r#"type="query",operation="me""#), "{text}");
    assert!(
        text.contains(r#"command="registerProduct",outcome="ok""#) || text.contains(r#"outcome="ok",command="registerProduct""#),
        "{text}"
    );
}

async fn malformed_and_oversized_bodies_are_refused(url: String) {
    let server = spawn_server(url).await;
    let client = reqwest::Client::new();
    let endpoint = format!("{}/graphql", server.base_url);

    let bad_json = client
        .post(&endpoint)
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .expect("bad JSON");
    assert_eq!(bad_json.status(), 400);
    assert_eq!(error_codes(&bad_json.json().await.expect("JSON")), ["BAD_USER_INPUT"]);

    let not_graphql = client.post(&endpoint).json(&json!({"hello": 1})).send().await.expect("not a request");
    assert_eq!(not_graphql.status(), 400);
    assert_eq!(error_codes(&not_graphql.json().await.expect("JSON")), ["BAD_USER_INPUT"]);

    let form = client
        .post(&endpoint)
        .header("content-type", "text/plain")
        .body("{\"query\":\"{__typename}\"}")
        .send()
        .await
        .expect("text/plain");
    assert_eq!(form.status(), 415, "cross-site forms cannot post GraphQL");

    let batch = client
        .post(&endpoint)
        .json(&json!([{"query": CATALOG}, {"query": CATALOG}]))
        .send()
        .await
        .expect("batch");
    assert_eq!(batch.status(), 400);
    let batch: Value = batch.json().await.expect("JSON");
    assert_eq!(error_codes(&batch), ["BAD_USER_INPUT"]);
    assert!(batch["errors"][0]["message"].as_str().unwrap_or("").contains("batch"), "{batch}");

    // Over 1 MiB, with a Content-Length (refused before reading) ...
    let padding = "x".repeat(1024 * 1024 + 10);
    let big = json!({"query": CATALOG, "variables": {"padding": padding}}).to_string();
    let refused = client
        .post(&endpoint)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("big body");
    assert_eq!(refused.status(), 413);
    assert_eq!(error_codes(&refused.json().await.expect("GraphQL-shaped 413")), ["BAD_USER_INPUT"]);
    // ... and streamed without one (refused while reading).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = client
        .post(&endpoint)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("streamed body");
    assert_eq!(streamed.status(), 413);
    assert_eq!(error_codes(&streamed.json().await.expect("GraphQL-shaped 413")), ["BAD_USER_INPUT"]);

    // A query that does not parse.
    let (status, body) = post_graphql(&server, None, "{ products(first: ", json!({})).await;
    assert_eq!(status, 200);
    assert!(
        error_codes(&body).iter().all(|c| c == "GRAPHQL_PARSE_FAILED" || c == "BAD_USER_INPUT") && !error_codes(&body).is_empty(),
        "{body}"
    );
    still_up(&server).await;
}

async fn deep_and_wide_queries_are_refused(url: String) {
    let server = spawn_server(url).await;
    // Deep: introspection nests without bound.
    let mut deep = String::from("name");
    for _ in 0..40 {
        deep = format!("ofType {{ {deep} }}");
    }
    let (status, body) = post_graphql(
        &server,
        None,
        &format!("{{ __type(name: \"Query\") {{ fields {{ type {{ {deep} }} }} }} }}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!error_codes(&body).is_empty(), "a 40-deep query is refused: {body}");
    assert!(body["data"].is_null(), "{body}");
    // Wide: thousands of aliased fields.
    let wide: String = (0..5000)
        .map(|i| format!("a{i}: products(first: 100) {{ nodes {{ sku name }} }} "))
        .collect();
    let (status, body) = post_graphql(&server, None, &format!("{{ {wide} }}"), json!({})).await;
    assert_eq!(status, 200);
    assert!(!error_codes(&body).is_empty(), "a 5000-wide query is refused");
    assert!(body["data"].is_null());
    still_up(&server).await;
}

async fn bad_tokens_are_unauthenticated(url: String) {
    let server = spawn_server(url).await;
    let expired = crate::support::expired_token("alice", Role::Customer, Duration::from_secs(600), crate::support::TEST_SECRET.as_bytes());
    let forged = api::auth::issue_token("alice", Role::Admin, Duration::from_secs(600), b"not the server's secret").expect("token");
    // {"alg":"none"} . {"sub":"alice","role":"admin","exp":9999999999} . (no signature)
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.";
    for token in [expired.as_str(), forged.as_str(), unsigned, "garbage"] {
        let (status, body) = post_graphql(&server, Some(token), CATALOG, json!({})).await;
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{token}: {body}");
        assert!(
            !body["errors"][0]["message"].as_str().unwrap_or("").contains(token),
            "the token is not echoed"
        );
    }
    let basic = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .json(&json!({"query": CATALOG}))
        .send()
        .await
        .expect("basic auth");
    assert_eq!(basic.status(), 401);
    // A good token works.
    let (status, body) = post_graphql(&server, Some(&server.token("alice", Role::Customer)), CATALOG, json!({})).await;
    assert_eq!(status, 200, "{body}");
    still_up(&server).await;
}

async fn callers_are_rate_limited(url: String) {
    let mut config = test_config(url);
    config.limits.rate_limit_per_second = 1;
    config.limits.rate_limit_burst = 3;
    let server = spawn_server_with(config).await;
    let alice = server.token("alice", Role::Customer);
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = reqwest::Client::new()
            .post(format!("{}/graphql", server.base_url))
            .bearer_auth(&alice)
            .json(&json!({"query": CATALOG}))
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
        answers.push((status, retry_after, response.json::<Value>().await.expect("JSON")));
    }
    assert!(answers[..3].iter().all(|(status, _, _)| *status == 200), "the burst passes: {answers:?}");
    let (status, retry_after, body) = answers.last().expect("answers");
    assert_eq!(*status, 429, "{answers:?}");
    assert_eq!(error_codes(body), ["RATE_LIMITED"]);
    assert!(
        retry_after.as_deref().is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
        "{retry_after:?}"
    );
    // Another caller has a budget of their own.
    let (status, body) = post_graphql(&server, Some(&server.token("bob", Role::Customer)), CATALOG, json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// A real browser preflight from `origin`: the allowed origin it answers with, if any, and
/// the headers it allows.
async fn preflight(server: &TestServer, origin: &str) -> (Option<String>, String) {
    let response = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", server.base_url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, apollo-require-preflight, x-request-id, traceparent",
        )
        .send()
        .await
        .expect("preflight");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (
        header("access-control-allow-origin"),
        header("access-control-allow-headers").unwrap_or_default(),
    )
}

/// The status of a WebSocket upgrade sent with this `Origin`.
async fn upgrade_status(server: &TestServer, origin: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url.as_str().into_client_request().expect("a request");
    request.headers_mut().insert("origin", origin.parse().expect("a header value"));
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("a header value"));
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade: {e}"),
    }
}

async fn cors_answers_configured_origins(url: String) {
    // Development: any localhost port works with nothing configured.
    let server = spawn_server(url.clone()).await;
    let (allowed, headers) = preflight(&server, "http://localhost:5173").await;
    assert_eq!(allowed.as_deref(), Some("http://localhost:5173"));
    for header in ["apollo-require-preflight", "x-request-id", "traceparent"] {
        assert!(headers.contains(header), "{header} in {headers}");
    }
    assert_eq!(preflight(&server, "https://evil.example").await.0, None);
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .header("origin", "http://localhost:5173")
        .json(&json!({"query": CATALOG}))
        .send()
        .await
        .expect("POST");
    let exposed = response
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(exposed.contains("x-request-id") && exposed.contains("retry-after"), "{exposed}");
    server.stop().await;

    // Production: only the listed origins, for preflights and WebSocket upgrades alike.
    let mut config = test_config(url);
    config.secret.environment = api::config::Environment::Production;
    config.cors_origins = vec!["https://shop.example".to_owned()];
    let server = spawn_server_with(config).await;
    assert_eq!(
        preflight(&server, "https://shop.example").await.0.as_deref(),
        Some("https://shop.example")
    );
    assert_eq!(preflight(&server, "https://evil.example").await.0, None);
    assert_eq!(preflight(&server, "http://localhost:5173").await.0, None);
    assert_eq!(upgrade_status(&server, "https://evil.example").await, 403);
    assert_eq!(upgrade_status(&server, "https://shop.example").await, 101);
}

async fn development_start_seeds_the_catalog(url: String) {
    let ready = |server: &TestServer| {
        let url = format!("{}/readyz", server.base_url);
        async move { reqwest::get(url).await.expect("GET /readyz").json::<Value>().await.expect("JSON") }
    };
    // The test configuration says --no-seed: nothing is appended.
    let quiet = spawn_server(url.clone()).await;
    assert_eq!(ready(&quiet).await["head"], 0);
    quiet.stop().await;

    let mut config = test_config(url.clone());
    config.no_seed = false;
    let server = spawn_server_with(config).await;
    // Through the command loop, as admin "seed": the store's log says so. (The log, not
    // /readyz first: on Postgres the readable head may trail a commit while transactions
    // of other databases are in flight.)
    let mut ws = crate::support::ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    crate::support::ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"token": server.token("root", Role::Admin)}}),
    )
    .await;
    assert_eq!(
        crate::support::ws_next_json(&mut ws, Duration::from_secs(10)).await["type"],
        "connection_ack"
    );
    let query = "subscription { events(categories: [\"product\"]) { position streamId type metadata } }";
    crate::support::ws_send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": query}})).await;
    let mut last_position = 0;
    let expected = api::seed::CATALOG.len() + api::seed::CATALOG.iter().filter(|(_, _, _, stock)| *stock > 0).count();
    let mut registered = std::collections::BTreeSet::new();
    for _ in 0..expected {
        let message = crate::support::ws_next_json(&mut ws, Duration::from_secs(10)).await;
        let event = &message["payload"]["data"]["events"];
        assert!(event.is_object(), "{message}");
        assert_eq!(event["metadata"]["actor"], "seed", "{event}");
        last_position = event["position"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{event}"));
        if event["type"] == "ProductRegistered" {
            registered.insert(event["streamId"].as_str().unwrap_or("").to_owned());
        }
    }
    assert!(
        registered.contains("product-apple") && registered.contains("product-banana"),
        "{registered:?}"
    );
    let head = ready(&server).await["head"].as_u64().expect("head");
    assert_eq!(head, last_position, "the catalog and nothing else");
    server.stop().await;
    // A second start on a store that is not empty appends nothing.
    let mut config = test_config(url);
    config.no_seed = false;
    let again = spawn_server_with(config).await;
    assert_eq!(ready(&again).await["head"].as_u64(), Some(head));
}

async fn slow_requests_time_out_with_a_graphql_error(url: String) {
    let mut config = test_config(url);
    config.limits.request_timeout = Duration::from_secs(1);
    let server = spawn_server_with(config).await;
    // A read that waits for a position the projection will never reach.
    let started = std::time::Instant::now();
    let (status, body) = post_graphql(
        &server,
        Some(&server.token("alice", Role::Customer)),
        "query($id: UUID!) { cart(id: $id, minPosition: \"9223372036854775807\") { id } }",
        json!({"id": uuid::Uuid::new_v4()}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_codes(&body), ["TIMEOUT"], "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "answered at the timeout, not at the consistency bound"
    );
    still_up(&server).await;
}

async fn request_ids_become_the_events_correlation_id(url: String) {
    let server = spawn_server(url).await;
    let request_id = uuid::Uuid::new_v4();
    let sku = format!("fig-{}", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .bearer_auth(server.token("root", Role::Admin))
        .header("x-request-id", request_id.to_string())
        .json(&json!({"query": "mutation($sku: String!) { registerProduct(input: {sku: $sku, name: \"Fig\", price: \"2.00\"}) { position } }", "variables": {"sku": sku}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.headers()["x-request-id"], request_id.to_string().as_str());
    let body: Value = response.json().await.expect("JSON");
    let position: u64 = body["data"]["registerProduct"]["position"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    let mut ws = crate::support::ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    crate::support::ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"token": server.token("root", Role::Admin)}}),
    )
    .await;
    assert_eq!(
        crate::support::ws_next_json(&mut ws, Duration::from_secs(10)).await["type"],
        "connection_ack"
    );
    let query = "subscription($after: Position) { events(afterPosition: $after) { streamId metadata } }";
    crate::support::ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"after": (position - 1).to_string()}}}),
    )
    .await;
    let message = crate::support::ws_next_json(&mut ws, Duration::from_secs(10)).await;
    let event = &message["payload"]["data"]["events"];
    assert_eq!(event["streamId"], format!("product-{sku}"), "{message}");
    assert_eq!(event["metadata"]["correlation_id"], request_id.to_string(), "{event}");
}

/// Graceful shutdown: a request already being served when shutdown starts still gets its
/// whole answer, while new connections are refused. The request is held in flight by the
/// client itself: it sends `Expect: 100-continue`, waits for the server's `100 Continue`
/// (the handler is reading the body, so the request is in flight), triggers shutdown,
/// waits until the listener refuses connections, and only then sends the body.
async fn shutdown_finishes_in_flight_requests(url: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = spawn_server(url).await;
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let body = json!({"query": CATALOG}).to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send the request head");
    let mut interim = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read the interim response");
            assert_eq!(n, 1, "the connection closed before 100 Continue: {:?}", String::from_utf8_lossy(&interim));
            interim.push(byte[0]);
        }
    })
    .await
    .expect("the server answers 100 Continue within 10 s");
    let interim = String::from_utf8_lossy(&interim).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    // Shut down while the request is in flight; new connections are refused soon after.
    server.shutdown.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(&addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "new connections still accepted 10 s after shutdown: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    // The in-flight request still completes with a well-formed GraphQL response.
    stream.write_all(body.as_bytes()).await.expect("send the body");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the in-flight request is answered within 10 s")
        .expect("read the response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    let json: Value = serde_json::from_str(&payload).unwrap_or_else(|e| panic!("not JSON ({e}): {payload:?}"));
    assert!(json["data"]["products"]["nodes"].is_array(), "{json}");
    assert!(json.get("errors").is_none(), "{json}");

    // And the server then stops.
    server.stop().await;
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut chunked: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = chunked.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|e| panic!("bad chunk size {size:?}: {e}"));
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        chunked = rest[size..].trim_start_matches("\r\n");
    }
    out
}

on_both_backends!(
    shutdown_finishes_in_flight_requests,
    request_ids_become_the_events_correlation_id,
    slow_requests_time_out_with_a_graphql_error,
    development_start_seeds_the_catalog,
    probes_and_request_ids,
    graphiql_is_served_without_external_urls,
    metrics_are_exposed,
    malformed_and_oversized_bodies_are_refused,
    deep_and_wide_queries_are_refused,
    bad_tokens_are_unauthenticated,
    callers_are_rate_limited,
    cors_answers_configured_origins,
);

//! The storefront and the admin console over plain HTTP: which pages each mode serves,
//! their security headers (the pages run under a strict Content-Security-Policy), and
//! the development-only token helper, which production does not have at all. The pages
//! themselves are driven in a browser by `tests/tests/browser`.

use api::config::Environment;
use serde_json::json;

use crate::support::{gql_data, spawn_server_with, test_config, TestServer};

/// GET as a browser asks for a page (GraphiQL is served only to those).
pub(crate) async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    client
        .get(format!("{}{path}", server.base_url))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("GET")
}

async fn dev_token(server: &TestServer, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/dev/token", server.base_url))
        .json(&body)
        .send()
        .await
        .expect("POST /dev/token")
}

pub(crate) fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A page: HTML under a CSP that allows only this origin (and its WebSocket), no framing
/// (also for browsers without `frame-ancestors`), no sniffing, no referrer.
pub(crate) async fn assert_page(server: &TestServer, path: &str, title: &str) {
    let response = get(server, path).await;
    assert_eq!(response.status(), 200, "{path}");
    assert!(header(&response, "content-type").starts_with("text/html"), "{path}");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{path}");
    let host = server.base_url.trim_start_matches("http://");
    let policy = header(&response, "content-security-policy").to_owned();
    assert!(policy.starts_with("default-src 'self';"), "{path}: {policy}");
    assert!(
        policy.contains(&format!("connect-src 'self' ws://{host} wss://{host};")),
        "{path}: {policy}"
    );
    assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
    assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{path}: {policy}");
    assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
    assert_eq!(header(&response, "referrer-policy"), "no-referrer", "{path}");
    let html = response.text().await.expect("body");
    assert!(html.contains(title), "{path}");
}

#[tokio::test]
async fn development_serves_the_pages_with_their_headers_and_a_token_helper() {
    let server = spawn_server_with(test_config(store::testing::sqlite())).await;
    assert_page(&server, "/", "cartsource storefront").await;
    assert_page(&server, "/admin", "cartsource admin console").await;

    for (path, kind) in [
        ("/web/js/storefront.js", "text/javascript"),
        ("/web/app.css", "text/css"),
        ("/web/graphql/storefront.graphql", "application/graphql"),
        ("/web/vendor/graphql-ws-6.4.2/client.js", "text/javascript"),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(header(&response, "content-type").starts_with(kind), "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{path}");
    }
    assert_eq!(get(&server, "/web/js/nothing.js").await.status(), 404);
    assert_eq!(get(&server, "/web/../Cargo.toml").await.status(), 404);

    // The helper signs what `cartsource token` would: the tokens work.
    let response = dev_token(&server, json!({"sub": "dora"})).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let customer = body["token"].as_str().expect("a token");
    let data = gql_data(&server, Some(customer), "{ me { id } }", json!({})).await;
    assert_eq!(data["me"]["id"], "dora");
    let body: serde_json::Value = dev_token(&server, json!({"sub": "root", "role": "admin"}))
        .await
        .json()
        .await
        .expect("JSON");
    let admin = body["token"].as_str().expect("a token");
    let data = gql_data(&server, Some(admin), "{ projections { name } }", json!({})).await;
    assert!(data["projections"].as_array().is_some_and(|p| !p.is_empty()), "{data}");

    for bad in [json!({"sub": " "}), json!({"sub": "x", "role": "root"})] {
        let response = dev_token(&server, bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    server.stop().await;
}

pub(crate) fn production(storefront: bool) -> api::Config {
    let mut config = test_config(store::testing::sqlite());
    config.secret.environment = Environment::Production;
    config.storefront = storefront;
    config
}

#[tokio::test]
async fn production_has_no_token_helper_and_pages_only_when_asked() {
    let server = spawn_server_with(production(false)).await;
    let root = get(&server, "/").await;
    assert_eq!(root.status(), 404, "without --storefront or --graphiql the root has nothing to show");
    assert!(header(&root, "content-type").starts_with("text/plain"));
    assert!(root.text().await.expect("text").contains("POST /graphql"));
    assert_eq!(get(&server, "/admin").await.status(), 404);
    assert_eq!(get(&server, "/web/js/storefront.js").await.status(), 404);
    assert_eq!(dev_token(&server, json!({"sub": "mallory", "role": "admin"})).await.status(), 404);
    server.stop().await;

    let server = spawn_server_with(production(true)).await;
    assert_page(&server, "/", "cartsource storefront").await;
    assert_page(&server, "/admin", "cartsource admin console").await;
    assert_eq!(
        dev_token(&server, json!({"sub": "mallory", "role": "admin"})).await.status(),
        404,
        "never a token helper in production, pages or not"
    );
    server.stop().await;
}

//! What the black-box tests share: the real server on a random port, real HTTP and
//! WebSocket clients, a real database.

use std::time::Duration;

use api::auth::Role;

#[path = "../shared/graphql_ws.rs"]
mod graphql_ws;
use api::{Application, Config};
pub use graphql_ws::RawOperation;

/// The signing secret every test server uses, so tests can mint tokens.
pub const TEST_SECRET: &str = "cartsource-test-secret-0123456789abcdef";

/// A token signed with `secret` that expired `ago` in the past (the server only issues
/// valid ones, so the tests of expiry sign their own).
pub fn expired_token(sub: &str, role: Role, ago: Duration, secret: &[u8]) -> String {
    let exp = jsonwebtoken::get_current_timestamp().saturating_sub(ago.as_secs());
    let claims = serde_json::json!({ "sub": sub, "role": role.as_str(), "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign an expired token")
}

/// A running server. It stops (gracefully) when dropped, or when the test's runtime ends.
pub struct TestServer {
    pub base_url: String,
    /// `ws://.../graphql/ws`.
    pub ws_url: String,
    /// Cancel to shut the server down as SIGTERM would.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Resolves when the server has shut down.
    pub stopped: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A token signed with [`TEST_SECRET`], valid for an hour.
    pub fn token(&self, sub: &str, role: Role) -> String {
        api::auth::issue_token(sub, role, Duration::from_secs(3600), TEST_SECRET.as_bytes()).expect("sign a token")
    }

    /// Shuts the server down and waits (bounded) until it has.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.stopped.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the server stops within 30 s");
            result.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The configuration of a test server: port 0, a fixed secret and master key (so the
/// production-mode tests start too), no seed, quiet logs, a data directory of its own.
pub fn test_config(database_url: String) -> Config {
    let data_dir = store::testing::temp_dir("cartsource-test");
    let master_key_file = data_dir.join("test_master_key");
    std::fs::write(&master_key_file, vault::MasterKey::generate_hex()).expect("write the test master key");
    let secret = api::config::SecretConfig {
        data_dir,
        jwt_secret: Some(TEST_SECRET.to_owned()),
        ..Default::default()
    };
    let personal_data = api::config::PersonalDataConfig {
        master_key_file: Some(master_key_file),
        previous_master_key_files: vec![],
    };
    // Tests fire requests quickly from one address; the rate-limit test sets its own.
    let limits = api::config::LimitsConfig {
        rate_limit_per_second: 10_000,
        rate_limit_burst: 10_000,
        ..Default::default()
    };
    Config {
        database_url: Some(database_url),
        secret,
        listen_addr: "127.0.0.1:0".into(),
        log: "warn".into(),
        no_seed: true,
        limits,
        personal_data,
        ..Default::default()
    }
}

/// Starts the real server on a free port against the given database URL.
pub async fn spawn_server(database_url: String) -> TestServer {
    spawn_server_with(test_config(database_url)).await
}

/// Starts the real server with a configuration from [`test_config`], adjusted.
pub async fn spawn_server_with(config: Config) -> TestServer {
    let app = Application::build(&config).await.unwrap_or_else(|e| panic!("start the server: {e}"));
    let addr = app.local_addr().expect("bound address");
    let shutdown = app.shutdown_token();
    let stopped = tokio::spawn(app.run_until(std::future::pending()));
    TestServer {
        base_url: format!("http://{addr}"),
        ws_url: format!("ws://{addr}/graphql/ws"),
        shutdown,
        stopped: Some(stopped),
    }
}

// ---------------------------------------------------------------- server transport helpers

/// Runs an async scenario `fn(String /* database URL */)` as two tests: on SQLite and on Postgres.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(store::testing::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(store::testing::postgres().await.url).await;
                }
            )*
        }
    };
}

/// POSTs a GraphQL operation; returns the HTTP status and the JSON body.
pub async fn post_graphql(server: &TestServer, token: Option<&str>, query: &str, variables: serde_json::Value) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .json(&serde_json::json!({"query": query, "variables": variables}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST /graphql");
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

/// The `extensions.code` of every error in a GraphQL response.
pub fn error_codes(body: &serde_json::Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `/graphql/ws` offering `protocol` (`graphql-transport-ws` or the
/// legacy `graphql-ws`), with an optional `Authorization` header on the upgrade request.
pub async fn ws_connect(server: &TestServer, protocol: &str, authorization: Option<&str>) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url.as_str().into_client_request().expect("a WebSocket request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header value"));
    if let Some(authorization) = authorization {
        request
            .headers_mut()
            .insert("authorization", authorization.parse().expect("header value"));
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

pub async fn ws_send(ws: &mut Ws, message: serde_json::Value) {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(message.to_string().into()))
        .await
        .expect("send on the WebSocket");
}

/// What the server sent next, skipping pings and pongs (and legacy `ka`).
#[derive(Debug)]
pub enum WsEvent {
    Json(serde_json::Value),
    Closed(Option<u16>, String),
    Ping,
}

/// The next text message or close, within `within`; panics on a timeout.
pub async fn ws_next(ws: &mut Ws, within: Duration) -> WsEvent {
    ws_next_with(ws, within, false).await
}

/// Like [`ws_next`], optionally reporting pings.
pub async fn ws_next_with(ws: &mut Ws, within: Duration, report_pings: bool) -> WsEvent {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("nothing from the server within {within:?}"));
        match next {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON from the server");
                if value["type"] == "ka" {
                    continue;
                }
                return WsEvent::Json(value);
            }
            Some(Ok(Message::Close(frame))) => {
                return WsEvent::Closed(
                    frame.as_ref().map(|f| u16::from(f.code)),
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                );
            }
            Some(Ok(Message::Ping(_))) if report_pings => return WsEvent::Ping,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return WsEvent::Closed(None, e.to_string()),
            None => return WsEvent::Closed(None, "stream ended".to_owned()),
        }
    }
}

/// The next JSON message; panics on a close.
pub async fn ws_next_json(ws: &mut Ws, within: Duration) -> serde_json::Value {
    match ws_next(ws, within).await {
        WsEvent::Json(value) => value,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Waits for the server's close frame and returns its code and reason.
pub async fn ws_expect_close(ws: &mut Ws, within: Duration) -> (Option<u16>, String) {
    loop {
        match ws_next(ws, within).await {
            WsEvent::Closed(code, reason) => return (code, reason),
            WsEvent::Json(_) | WsEvent::Ping => continue,
        }
    }
}

// ---------------------------------------------------------------- GraphQL helpers (schema and resolvers)

/// Runs an operation that must succeed and returns its `data`; panics with the errors.
pub async fn gql_data(server: &TestServer, token: Option<&str>, query: &str, variables: serde_json::Value) -> serde_json::Value {
    let (status, body) = post_graphql(server, token, query, variables).await;
    assert!(
        status == 200 && body.get("errors").is_none(),
        "expected success, got HTTP {status}: {body}"
    );
    body["data"].clone()
}

/// Runs an operation that must fail and returns its first error (message, code and
/// extensions); panics when it succeeds.
pub async fn gql_error(server: &TestServer, token: Option<&str>, query: &str, variables: serde_json::Value) -> serde_json::Value {
    let (_, body) = post_graphql(server, token, query, variables).await;
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("expected an error, got {body}"));
    let first = errors.first().unwrap_or_else(|| panic!("expected an error, got {body}")).clone();
    assert!(first["extensions"]["code"].is_string(), "every error carries extensions.code: {body}");
    first
}

/// The `extensions.code` of an operation that must fail.
pub async fn gql_error_code(server: &TestServer, token: Option<&str>, query: &str, variables: serde_json::Value) -> String {
    let error = gql_error(server, token, query, variables).await;
    error["extensions"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Registers a product as `admin`; returns the payload's position.
pub async fn register_product(server: &TestServer, admin: &str, sku: &str, name: &str, price: &str, stock: i64) -> String {
    let data = gql_data(
        server,
        Some(admin),
        "mutation($input: RegisterProductInput!) { registerProduct(input: $input) { product { sku version } position } }",
        serde_json::json!({"input": {"sku": sku, "name": name, "price": price, "initialStock": stock}}),
    )
    .await;
    data["registerProduct"]["position"].as_str().expect("a position").to_owned()
}

/// The server's `/metrics` page (Prometheus text).
pub async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.base_url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text")
}

/// Creates a cart for the token's customer; returns its id.
pub async fn create_cart(server: &TestServer, token: &str) -> String {
    let data = gql_data(server, Some(token), "mutation { createCart { cart { id } } }", serde_json::json!({})).await;
    data["createCart"]["cart"]["id"].as_str().expect("a cart id").to_owned()
}

/// Adds `quantity` of `sku` to a cart; returns the `addItemToCart` payload.
pub async fn add_item(server: &TestServer, token: &str, cart_id: &str, sku: &str, quantity: i64) -> serde_json::Value {
    let data = gql_data(
        server,
        Some(token),
        "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version itemCount } position } }",
        serde_json::json!({"input": {"cartId": cart_id, "sku": sku, "quantity": quantity}}),
    )
    .await;
    data["addItemToCart"].clone()
}

/// Polls `probe` until it yields a value or `within` runs out (then panics with `what`).
/// For effects of background workers that no request can wait on directly.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A subscription over graphql-transport-ws (graphql-ws-client), with the token in the
/// connection_init payload. Keep it alive as long as you read from it.
pub struct LiveSubscription {
    _client: graphql_ws_client::Client,
    pub stream: graphql_ws_client::Subscription<RawOperation>,
}

impl LiveSubscription {
    /// The next response (`{"data": ..., "errors": ...}`), within `within`.
    pub async fn next(&mut self, within: Duration) -> serde_json::Value {
        use futures::StreamExt;
        tokio::time::timeout(within, self.stream.next())
            .await
            .unwrap_or_else(|_| panic!("no subscription message within {within:?}"))
            .expect("the subscription is still open")
            .expect("a well-formed response")
    }
}

/// Subscribes with `query`/`variables` as the holder of `token`.
pub async fn subscribe(server: &TestServer, token: &str, query: &str, variables: serde_json::Value) -> LiveSubscription {
    let socket = ws_connect(server, "graphql-transport-ws", None).await.expect("connect the WebSocket");
    let (client, stream) = graphql_ws::subscribe_on(socket, token, query, variables).await;
    LiveSubscription { _client: client, stream }
}

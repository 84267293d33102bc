//! A client of the cluster as a shop front would be: GraphQL over HTTP to any API node, a
//! steady writer, and graphql-transport-ws subscriptions.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::harness::SECRET;

#[path = "../shared/graphql_ws.rs"]
mod graphql_ws;

/// A token signed with the cluster's secret.
pub fn token(sub: &str, role: api::auth::Role) -> String {
    api::auth::issue_token(sub, role, Duration::from_secs(3600), SECRET.as_bytes()).expect("sign a token")
}

/// GraphQL over HTTP, as one caller.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    pub fn new(token: String) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Client { http, token }
    }

    /// `data`, or the errors (or the transport failure) as text.
    pub async fn gql(&self, base_url: &str, query: &str, variables: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{base_url}/graphql"))
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let body: Value = response.json().await.map_err(|e| format!("body: {e}"))?;
        match body.get("errors") {
            Some(errors) => Err(errors.to_string()),
            None => Ok(body["data"].clone()),
        }
    }

    /// Like [`Client::gql`], panicking on errors.
    pub async fn must(&self, base_url: &str, query: &str, variables: Value) -> Value {
        self.gql(base_url, query, variables).await.unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// Creates a cart for this client's customer; returns its id.
    pub async fn create_cart(&self, base_url: &str) -> String {
        let created = self.must(base_url, CREATE_CART, json!({})).await;
        created["createCart"]["cart"]["id"].as_str().expect("a cart id").to_owned()
    }
}

pub const CREATE_CART: &str = "mutation { createCart { cart { id } position } }";
pub const ADD_ITEM: &str = "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version } position } }";
pub const PLACE_ORDER: &str = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { order { id } position } }";
pub const CANCEL_ORDER: &str = "mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { order { id } position } }";
pub const REGISTER: &str = "mutation($input: RegisterProductInput!) { registerProduct(input: $input) { product { sku } position } }";
pub const SKUS: [&str; 3] = ["tea", "coffee", "cocoa"];

/// Registers the workload's products with plenty of stock.
pub async fn register_products(admin: &Client, base_url: &str) {
    for sku in SKUS {
        admin
            .must(
                base_url,
                REGISTER,
                json!({"input": {"sku": sku, "name": sku, "price": "2.50", "initialStock": 1_000_000}}),
            )
            .await;
    }
}

/// What a writer did.
#[derive(Debug, Default)]
pub struct Written {
    pub commands: u64,
    pub failed: Vec<String>,
    pub orders: u64,
    pub cancelled: u64,
    /// The position of the last acknowledged command.
    pub last_position: u64,
    /// Read-your-write queries (`cart(minPosition)`) that timed out, of all asked.
    pub stale_reads: u64,
    pub reads: u64,
    /// How long the writer wrote.
    pub elapsed: Duration,
}

/// Writes through the API nodes in turn at about `per_second` commands until `stop`:
/// carts with two lines, checked out; every third order cancelled (the inventory reactor
/// releases its stock). Each cart is read back with `minPosition` through the other node.
pub async fn write_steadily(client: Client, nodes: Vec<String>, per_second: u32, mut stop: watch::Receiver<bool>) -> Written {
    let mut written = Written::default();
    let pace = Duration::from_secs(1) / per_second.max(1);
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0usize;
    let mut next_node = || {
        turn += 1;
        nodes[turn % nodes.len()].clone()
    };
    let mut round = 0u64;
    let mut reads = tokio::task::JoinSet::new();
    let started = Instant::now();
    while !*stop.borrow() {
        round += 1;
        let mut step = async |query: &str, variables: Value, written: &mut Written| -> Option<Value> {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => {}
            }
            written.commands += 1;
            match client.gql(&next_node(), query, variables).await {
                Ok(data) => Some(data),
                Err(e) => {
                    written.failed.push(e);
                    None
                }
            }
        };
        let Some(data) = step(CREATE_CART, json!({}), &mut written).await else {
            continue;
        };
        let cart = data["createCart"]["cart"]["id"].as_str().unwrap_or_default().to_owned();
        let mut ok = true;
        for sku in [SKUS[(round % 3) as usize], SKUS[((round + 1) % 3) as usize]] {
            let input = json!({"input": {"cartId": cart, "sku": sku, "quantity": 1 + (round % 4)}});
            ok &= step(ADD_ITEM, input, &mut written).await.is_some();
        }
        if !ok {
            continue;
        }
        let Some(placed) = step(PLACE_ORDER, json!({"input": {"cartId": cart}}), &mut written).await else {
            continue;
        };
        written.orders += 1;
        let order = placed["placeOrder"]["order"]["id"].as_str().unwrap_or_default().to_owned();
        let mut position = position_of(&placed["placeOrder"]["position"]);
        if round.is_multiple_of(3) {
            if let Some(cancelled) = step(CANCEL_ORDER, json!({"input": {"orderId": order}}), &mut written).await {
                written.cancelled += 1;
                position = position_of(&cancelled["cancelOrder"]["position"]);
            }
        }
        written.last_position = written.last_position.max(position);
        // Read back beside the writes, so that a slow read does not slow the writer.
        let (client, node) = (client.clone(), next_node());
        reads.spawn(async move {
            client
                .gql(
                    &node,
                    "query($id: UUID!, $at: Position) { cart(id: $id, minPosition: $at) { status } }",
                    json!({"id": cart, "at": position.to_string()}),
                )
                .await
                .is_ok()
        });
    }
    written.elapsed = started.elapsed();
    while let Some(read) = reads.join_next().await {
        written.reads += 1;
        if !read.unwrap_or(false) {
            written.stale_reads += 1;
        }
    }
    written
}

pub fn position_of(value: &Value) -> u64 {
    value.as_str().and_then(|p| p.parse().ok()).unwrap_or_default()
}

/// Every consumer's status through the API, as an admin sees it.
pub async fn statuses(admin: &Client, base_url: &str) -> Result<Vec<Value>, String> {
    let data = admin
        .gql(base_url, "{ projections { name leader position headPosition state } }", json!({}))
        .await?;
    Ok(data["projections"].as_array().cloned().unwrap_or_default())
}

/// Waits until every consumer has applied the whole log and no reactor appends any more.
pub async fn wait_until_caught_up(admin: &Client, base_url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut settled = 0;
    loop {
        let all = statuses(admin, base_url).await.unwrap_or_default();
        let done = !all.is_empty() && all.iter().all(|s| s["position"] == s["headPosition"] && s["state"] == "RUNNING");
        settled = if done { settled + 1 } else { 0 };
        if settled >= 3 {
            return;
        }
        assert!(Instant::now() < deadline, "not caught up after {within:?}: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A subscription over graphql-transport-ws (graphql-ws-client), token in connection_init.
pub struct Subscription {
    _client: graphql_ws_client::Client,
    pub stream: graphql_ws_client::Subscription<graphql_ws::RawOperation>,
}

pub async fn subscribe(ws_url: &str, token: &str, query: &str, variables: Value) -> Subscription {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = ws_url.into_client_request().expect("a WebSocket request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("a header"));
    let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("connect the WebSocket");
    let (client, stream) = graphql_ws::subscribe_on(socket, token, query, variables).await;
    Subscription { _client: client, stream }
}

//! GraphQL over HTTP, one `reqwest` client (keep-alive) per simulated user, and the
//! operations the driver sends to both servers: the exact same text to each.

use std::time::Duration;

use serde_json::{json, Value};

pub const CREATE_CART: &str = "mutation($id: UUID!) { createCart(input: {cartId: $id}) { cart { id version } position } }";
pub const ADD_ITEM: &str =
    "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { id version lines { sku quantity } } position } }";
pub const CART: &str = "query($id: UUID!) { cart(id: $id) { id version lines { sku quantity } } }";
pub const REGISTER_PRODUCT: &str = "mutation($input: RegisterProductInput!) { registerProduct(input: $input) { product { sku } } }";

/// How long one request may take before it counts as `CLIENT_TIMEOUT`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One simulated user: its own connection pool and token.
#[derive(Clone)]
pub struct Gql {
    client: reqwest::Client,
    url: String,
    authorization: String,
}

impl Gql {
    pub fn new(base_url: &str, token: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).tcp_nodelay(true).build()?;
        Ok(Gql {
            client,
            url: format!("{base_url}/graphql"),
            authorization: format!("Bearer {token}"),
        })
    }

    /// `data`, or the error's `extensions.code` (`CLIENT_TIMEOUT`, `TRANSPORT`,
    /// `HTTP_<status>` or `NO_CODE` when the server gave none).
    pub async fn call(&self, query: &str, variables: Value) -> Result<Value, String> {
        let response = self
            .client
            .post(&self.url)
            .header("authorization", &self.authorization)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(e) if e.is_timeout() => return Err("CLIENT_TIMEOUT".to_owned()),
            Err(_) => return Err(format!("HTTP_{}", status.as_u16())),
        };
        if let Some(error) = body.get("errors").and_then(|e| e.get(0)) {
            let code = error.pointer("/extensions/code").and_then(Value::as_str).unwrap_or("NO_CODE");
            return Err(code.to_owned());
        }
        match body.get("data") {
            Some(data) if status.is_success() && !data.is_null() => Ok(data.clone()),
            _ => Err(format!("HTTP_{}", status.as_u16())),
        }
    }

    /// `addItemToCart` without expectedVersion; the cart's new version.
    pub async fn add_item(&self, cart_id: uuid::Uuid, sku: &str) -> Result<i64, String> {
        let input = json!({ "cartId": cart_id, "sku": sku, "quantity": 1 });
        let data = self.call(ADD_ITEM, json!({ "input": input })).await?;
        data.pointer("/addItemToCart/cart/version")
            .and_then(Value::as_i64)
            .ok_or_else(|| "BAD_RESPONSE".to_owned())
    }

    pub async fn create_cart(&self) -> Result<uuid::Uuid, String> {
        let id = uuid::Uuid::new_v4();
        self.call(CREATE_CART, json!({ "id": id })).await?;
        Ok(id)
    }

    /// `cart(id)`; an absent cart counts as the error `NULL_CART`.
    pub async fn cart(&self, cart_id: uuid::Uuid) -> Result<Value, String> {
        let data = self.call(CART, json!({ "id": cart_id })).await?;
        match data.get("cart") {
            Some(cart) if !cart.is_null() => Ok(cart.clone()),
            _ => Err("NULL_CART".to_owned()),
        }
    }
}

fn transport(e: reqwest::Error) -> String {
    if e.is_timeout() { "CLIENT_TIMEOUT" } else { "TRANSPORT" }.to_owned()
}

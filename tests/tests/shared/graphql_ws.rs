//! graphql-transport-ws through graphql-ws-client, for the test binaries that subscribe
//! (`it` against an in-process server, `nodes` against processes): included by path.

use serde_json::{json, Value};

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-ws-client operation: query text and variables, answered as raw JSON.
#[derive(serde::Serialize)]
pub struct RawOperation {
    pub query: String,
    pub variables: Value,
}

impl graphql_ws_client::graphql::GraphqlOperation for RawOperation {
    type Response = Value;
    type Error = serde_json::Error;
    fn decode(&self, data: Value) -> Result<Self::Response, Self::Error> {
        Ok(data)
    }
}

/// Subscribes over an open socket as the holder of `token` (in the connection_init
/// payload). Keep the client alive as long as you read from the subscription.
pub async fn subscribe_on(
    socket: Socket,
    token: &str,
    query: &str,
    variables: Value,
) -> (graphql_ws_client::Client, graphql_ws_client::Subscription<RawOperation>) {
    let (client, actor) = graphql_ws_client::Client::build(socket)
        .payload(json!({"Authorization": format!("Bearer {token}")}))
        .expect("an init payload")
        .build()
        .await
        .expect("connection_ack");
    tokio::spawn(std::future::IntoFuture::into_future(actor));
    let stream = client
        .subscribe(RawOperation {
            query: query.to_owned(),
            variables,
        })
        .await
        .expect("subscribe");
    (client, stream)
}

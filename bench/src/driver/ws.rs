//! One `cartChanged` subscriber over graphql-transport-ws (tokio-tungstenite): connect,
//! `connection_init` with the token, subscribe from the start of the cart's stream, log
//! every delivery with its receive time until told to stop, then close the socket.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const CART_CHANGED: &str = "subscription($id: UUID!) { cartChanged(cartId: $id) { event { version occurredAt } cart { version } } }";

/// One event as a subscriber saw it.
pub struct Delivery {
    pub version: i64,
    /// The event's recorded time (`occurredAt`), as the server wrote it.
    pub occurred_at: Option<OffsetDateTime>,
    pub received_at: OffsetDateTime,
}

/// What one subscriber saw; `ended` says why it stopped early, if it did.
#[derive(Default)]
pub struct SubscriberLog {
    pub deliveries: Vec<Delivery>,
    pub ended: Option<String>,
}

/// Subscribes to `cart_id` and logs deliveries until `stop` turns true. `latest` holds
/// the highest version received: at 1 (the replayed creation) the subscription is live.
pub async fn subscribe_cart(
    ws_url: String,
    token: String,
    cart_id: uuid::Uuid,
    latest: Arc<AtomicI64>,
    mut stop: watch::Receiver<bool>,
) -> SubscriberLog {
    let mut log = SubscriberLog::default();
    let mut request = match ws_url.as_str().into_client_request() {
        Ok(request) => request,
        Err(e) => return ended(log, format!("bad url: {e}")),
    };
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("graphql-transport-ws"));
    let connect = tokio_tungstenite::connect_async(request);
    let (mut socket, _) = match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return ended(log, format!("connect: {e}")),
        Err(_) => return ended(log, "connect: timed out".to_owned()),
    };
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": CART_CHANGED, "variables": { "id": cart_id } } });
    if socket.send(Message::text(init.to_string())).await.is_err() {
        return ended(log, "send init failed".to_owned());
    }
    let mut acked = false;
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            message = socket.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                log.ended = Some(format!("server closed: {frame:?}"));
                return log;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return ended(log, format!("read: {e}")),
            None => return ended(log, "socket ended".to_owned()),
        };
        let received_at = OffsetDateTime::now_utc();
        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
        match message.get("type").and_then(Value::as_str) {
            Some("connection_ack") if !acked => {
                acked = true;
                if socket.send(Message::text(subscribe.to_string())).await.is_err() {
                    return ended(log, "send subscribe failed".to_owned());
                }
            }
            Some("ping") => {
                let _ = socket.send(Message::text(json!({ "type": "pong" }).to_string())).await;
            }
            Some("next") => {
                let event = message.pointer("/payload/data/cartChanged/event");
                let Some(version) = event.and_then(|e| e.get("version")).and_then(Value::as_i64) else {
                    return ended(log, format!("unexpected payload: {message}"));
                };
                let occurred_at = event
                    .and_then(|e| e.get("occurredAt"))
                    .and_then(Value::as_str)
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
                latest.fetch_max(version, Ordering::SeqCst);
                log.deliveries.push(Delivery {
                    version,
                    occurred_at,
                    received_at,
                });
            }
            Some(other) => return ended(log, format!("{other}: {message}")),
            None => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.close(None)).await;
    log
}

fn ended(mut log: SubscriberLog, why: String) -> SubscriberLog {
    log.ended = Some(why);
    log
}

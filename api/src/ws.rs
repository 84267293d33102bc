//! GraphQL subscriptions over WebSocket at `/graphql/ws`: graphql-transport-ws (the
//! `graphql-ws` library) and the legacy subscriptions-transport-ws protocol, negotiated
//! from `Sec-WebSocket-Protocol` by async-graphql-axum's `GraphQLWebSocket`.
//!
//! async-graphql runs the protocol; a pump between it and the socket adds what it lacks:
//! * Authentication: a token in the upgrade request's `Authorization` header (a bad one
//!   is refused with HTTP 401 before the upgrade), or in the `connection_init` payload as
//!   `Authorization: "Bearer ..."`, `authorization` or `token` (a bad one closes the
//!   socket with 4403 Forbidden, graphql-transport-ws's code for a refused init; legacy
//!   clients first get `connection_error` with UNAUTHENTICATED). No token is an
//!   anonymous caller, whose cart and order subscriptions the resolvers refuse.
//! * A connection-init timeout (4408), a subscribe before connection_init (4401), a cap on subscriptions per connection (the extra
//!   subscription gets an `error` message with RATE_LIMITED, the others keep running), a
//!   duplicate subscription id (4409), a cap on connections per process (HTTP 503).
//! * Keep-alive: a WebSocket ping every interval (plus `ka` for legacy clients); a peer
//!   silent for three intervals is dropped.
//! * Shutdown: every socket gets a close frame (1001 going away) before the process exits.
//! * Traces: a `traceparent` on the upgrade request is the parent of the connection's span;
//!   one in the `connection_init` payload (browsers cannot set upgrade headers) is the
//!   parent of each operation's span (`schema::gate`). Either correlates the events of the
//!   connection's mutations.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::{WebSocketProtocols, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, Executor};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::{authenticate, Principal};
use crate::error::ApiError;
use crate::limits::{error_response, RateLimit};
use crate::metrics;
use crate::telemetry::ReceivedTrace;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Close codes of graphql-transport-ws (and reused for the legacy protocol).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
}

/// Bytes tungstenite reads from the socket at a time. Its default (128 KiB) is allocated up
/// front for every socket: with 1,000 idle subscriptions that alone was ~128 MiB of RSS.
/// Messages larger than this still arrive whole (the buffer grows for them).
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// 0: every message is written through at once (the pump sends one message at a time and
/// flushes it anyway), so no socket keeps a 128 KiB batching buffer.
const WRITE_BUFFER_BYTES: usize = 0;

#[derive(Clone, Debug)]
pub struct WsSettings {
    pub init_timeout: Duration,
    pub max_subscriptions: usize,
    pub keepalive: Duration,
    pub max_message_bytes: usize,
}

/// What every WebSocket shares.
#[derive(Clone)]
pub struct WsHub {
    pub settings: WsSettings,
    pub secret: Arc<[u8]>,
    pub rate_limit: RateLimit,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl WsHub {
    pub fn new(settings: WsSettings, max_connections: usize, secret: Arc<[u8]>, rate_limit: RateLimit, shutdown: CancellationToken) -> Self {
        WsHub {
            settings,
            secret,
            rate_limit,
            connections: Arc::new(Semaphore::new(max_connections.max(1))),
            shutdown,
            tracker: TaskTracker::new(),
        }
    }

    /// Resolves once every socket has sent its close frame after shutdown began.
    pub async fn closed(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The upgrade handler, generic over the schema so tests can mount a small one.
pub async fn upgrade<E: Executor>(
    State((executor, hub)): State<(E, WsHub)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if hub.shutdown.is_cancelled() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, ApiError::internal("shutting down"));
    }
    if let Err(refused) = hub.rate_limit.check(&format!("ip:{}", peer.ip())).await {
        metrics::ws_refused("rate_limited");
        return refused.into_response();
    }
    let header_token = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let principal = match authenticate(header_token, &hub.secret) {
        Ok(principal) => principal,
        Err(e) => {
            metrics::ws_refused("unauthenticated");
            return error_response(StatusCode::UNAUTHORIZED, e.into());
        }
    };
    let Ok(permit) = hub.connections.clone().try_acquire_owned() else {
        metrics::ws_refused("too_many_connections");
        return error_response(StatusCode::SERVICE_UNAVAILABLE, ApiError::RateLimited);
    };
    let legacy = negotiated(&headers) == WebSocketProtocols::SubscriptionsTransportWS;
    let span = tracing::info_span!("websocket", otel.kind = "server", %peer, legacy, caller = principal.as_ref().map(|p| p.id.as_str()));
    let header_trace = ReceivedTrace::from_headers(&headers);
    if let Some(received) = &header_trace {
        // Err only when no layer exports spans.
        let _ = span.set_parent(received.context.clone());
    }
    let tracker = hub.tracker.clone();
    let size = hub.settings.max_message_bytes;
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(size)
        .max_frame_size(size)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            tracker.track_future(
                Connection {
                    hub,
                    protocol,
                    legacy,
                    header_principal: principal,
                    header_trace,
                    _permit: permit,
                }
                .serve(socket, executor)
                .instrument(span),
            )
        })
}

/// The protocol `GraphQLProtocol` negotiated (it keeps its value private), found the
/// same way: the first offered name async-graphql knows.
fn negotiated(headers: &HeaderMap) -> WebSocketProtocols {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|offered| offered.split(',').find_map(|p| p.trim().parse::<WebSocketProtocols>().ok()))
        .unwrap_or(WebSocketProtocols::GraphQLWS)
}

struct Connection {
    hub: WsHub,
    protocol: GraphQLProtocol,
    legacy: bool,
    header_principal: Option<Principal>,
    header_trace: Option<ReceivedTrace>,
    _permit: OwnedSemaphorePermit,
}

/// What the pump does with one client message.
enum Verdict {
    Forward,
    Drop,
    Reply(String),
    /// Send the message, then close.
    ReplyAndClose(String, u16, String),
    Close(u16, String),
}

struct Pump {
    legacy: bool,
    max_subscriptions: usize,
    secret: Arc<[u8]>,
    header_principal: Option<Principal>,
    /// Filled by a verified connection_init, read by async-graphql's init callback.
    principal_slot: Arc<std::sync::Mutex<Option<Principal>>>,
    /// The upgrade's trace, else connection_init's; handed over with the principal.
    trace_slot: Arc<std::sync::Mutex<Option<ReceivedTrace>>>,
    init_received: bool,
    active: HashSet<String>,
}

impl Pump {
    fn client_message(&mut self, text: &str) -> Verdict {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return Verdict::Forward; // async-graphql answers malformed messages itself
        };
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        match message.get("type").and_then(Value::as_str) {
            Some("connection_init") if !self.init_received => {
                self.init_received = true;
                match self.init_principal(message.get("payload")) {
                    Ok(principal) => {
                        if let Ok(mut slot) = self.principal_slot.lock() {
                            *slot = principal;
                        }
                        if let Ok(mut slot) = self.trace_slot.lock() {
                            if slot.is_none() {
                                *slot = message.get("payload").and_then(ReceivedTrace::from_payload);
                            }
                        }
                        Verdict::Forward
                    }
                    Err(e) => {
                        metrics::ws_refused("unauthenticated");
                        let reason = format!("Forbidden: {e}");
                        if self.legacy {
                            let error =
                                json!({"type": "connection_error", "payload": {"message": e.to_string(), "extensions": {"code": "UNAUTHENTICATED"}}});
                            Verdict::ReplyAndClose(error.to_string(), close::FORBIDDEN, reason)
                        } else {
                            Verdict::Close(close::FORBIDDEN, reason)
                        }
                    }
                }
            }
            Some("subscribe" | "start") => {
                let Some(id) = id else { return Verdict::Forward };
                if !self.init_received && !self.legacy {
                    return Verdict::Close(close::UNAUTHORIZED, "Unauthorized".to_owned());
                }
                if self.active.contains(&id) {
                    if self.legacy {
                        return Verdict::Drop;
                    }
                    return Verdict::Close(close::DUPLICATE_ID, format!("Subscriber for {id} already exists"));
                }
                if self.active.len() >= self.max_subscriptions {
                    metrics::ws_refused("too_many_subscriptions");
                    let error = json!({"message": format!("at most {} subscriptions per connection: complete one first", self.max_subscriptions), "extensions": {"code": "RATE_LIMITED"}});
                    let payload = if self.legacy { error } else { json!([error]) };
                    return Verdict::Reply(json!({"id": id, "type": "error", "payload": payload}).to_string());
                }
                if self.init_received {
                    self.active.insert(id);
                    metrics::ws_subscriptions(1.0);
                }
                Verdict::Forward
            }
            Some("complete" | "stop") => {
                if let Some(id) = id {
                    self.finished(&id);
                }
                Verdict::Forward
            }
            _ => Verdict::Forward,
        }
    }

    /// Watches the server's messages for the end of a subscription.
    fn server_message(&mut self, text: &str) {
        if !(text.contains("\"complete\"") || text.contains("\"error\"")) {
            return;
        }
        if let Ok(message) = serde_json::from_str::<Value>(text) {
            if matches!(message.get("type").and_then(Value::as_str), Some("complete" | "error")) {
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.finished(id);
                }
            }
        }
    }

    fn finished(&mut self, id: &str) {
        if self.active.remove(id) {
            metrics::ws_subscriptions(-1.0);
        }
    }

    fn init_principal(&self, payload: Option<&Value>) -> Result<Option<Principal>, crate::auth::AuthError> {
        let token = payload.and_then(|p| {
            ["Authorization", "authorization", "token"]
                .iter()
                .find_map(|key| p.get(*key).and_then(Value::as_str))
                .or_else(|| {
                    p.get("headers")
                        .and_then(|h| h.get("Authorization").or_else(|| h.get("authorization")))
                        .and_then(Value::as_str)
                })
        });
        match token {
            Some(token) => authenticate(Some(token), &self.secret),
            None => Ok(self.header_principal.clone()),
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        metrics::ws_subscriptions(-(self.active.len() as f64));
    }
}

impl Connection {
    async fn serve<E: Executor>(self, socket: WebSocket, executor: E) {
        metrics::ws_connection(1.0);
        let settings = self.hub.settings.clone();
        let legacy = self.legacy;
        let mut pump = Pump {
            legacy,
            max_subscriptions: settings.max_subscriptions,
            secret: self.hub.secret.clone(),
            header_principal: self.header_principal.clone(),
            principal_slot: Arc::new(std::sync::Mutex::new(None)),
            trace_slot: Arc::new(std::sync::Mutex::new(self.header_trace.clone())),
            init_received: false,
            active: HashSet::new(),
        };
        let (mut socket_tx, mut socket_rx) = socket.split();
        let (mut to_engine, engine_rx) = futures::channel::mpsc::channel::<Result<Message, axum::Error>>(16);
        let (engine_tx, mut from_engine) = futures::channel::mpsc::channel::<Message>(16);
        let slot = pump.principal_slot.clone();
        let trace_slot = pump.trace_slot.clone();
        let engine = GraphQLWebSocket::new_with_pair(engine_tx, engine_rx, executor, self.protocol)
            .on_connection_init(move |_payload| async move {
                let mut data = Data::default();
                if let Some(principal) = slot.lock().ok().and_then(|mut s| s.take()) {
                    data.insert(principal);
                }
                if let Some(trace) = trace_slot.lock().ok().and_then(|mut s| s.take()) {
                    data.insert(trace);
                }
                Ok(data)
            })
            .serve();
        tokio::pin!(engine);

        let init_deadline = tokio::time::sleep(settings.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + settings.keepalive, settings.keepalive);
        let mut last_heard = Instant::now();
        let mut engine_running = true;
        let mut acked = false;

        let close: Option<(u16, String)> = loop {
            tokio::select! {
                _ = &mut engine, if engine_running => engine_running = false,
                _ = self.hub.shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down".to_owned())),
                _ = &mut init_deadline, if !pump.init_received => {
                    metrics::ws_refused("init_timeout");
                    break Some((close::INIT_TIMEOUT, "Connection initialisation timeout".to_owned()));
                }
                _ = keepalive.tick() => {
                    if last_heard.elapsed() > settings.keepalive * 3 {
                        break Some((close::GOING_AWAY, "keep-alive timeout".to_owned()));
                    }
                    let mut ok = socket_tx.send(Message::Ping(Default::default())).await.is_ok();
                    if legacy && acked {
                        ok = ok && socket_tx.send(Message::Text(r#"{"type":"ka"}"#.into())).await.is_ok();
                    }
                    if !ok {
                        break None;
                    }
                }
                incoming = socket_rx.next() => {
                    last_heard = Instant::now();
                    let message = match incoming {
                        Some(Ok(message)) => message,
                        Some(Err(_)) | None => break None,
                    };
                    let text = match &message {
                        Message::Text(text) => text.as_str().to_owned(),
                        Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        Message::Close(_) => break None,
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    match pump.client_message(&text) {
                        Verdict::Forward => {
                            if to_engine.send(Ok(message)).await.is_err() {
                                break None;
                            }
                        }
                        Verdict::Drop => {}
                        Verdict::Reply(reply) => {
                            if socket_tx.send(Message::Text(reply.into())).await.is_err() {
                                break None;
                            }
                        }
                        Verdict::ReplyAndClose(reply, code, reason) => {
                            if socket_tx.send(Message::Text(reply.into())).await.is_err() {
                                break None;
                            }
                            break Some((code, reason));
                        }
                        Verdict::Close(code, reason) => break Some((code, reason)),
                    }
                }
                outgoing = from_engine.next() => {
                    let Some(message) = outgoing else { break Some((1000, String::new())) };
                    match &message {
                        Message::Text(text) => {
                            acked = acked || text.contains("connection_ack");
                            pump.server_message(text.as_str());
                        }
                        Message::Close(_) => {
                            let _ = socket_tx.send(message).await;
                            break None;
                        }
                        _ => {}
                    }
                    if socket_tx.send(message).await.is_err() {
                        break None;
                    }
                }
            }
        };
        drop(to_engine);
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: truncate(&reason, 120).into(),
            };
            if socket_tx.send(Message::Close(Some(frame))).await.is_ok() {
                // Wait briefly for the client's close reply so the frame is read before the TCP close.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while let Some(Ok(m)) = socket_rx.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        metrics::ws_connection(-1.0);
        drop(pump);
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

//! One trace from a mutation to its events, the reactions to them and their projection:
//! a W3C `traceparent` sent over HTTP or in a WebSocket `connection_init` becomes the
//! parent of the server's spans, is recorded in the events' metadata (with its trace id as
//! correlation id), and the workers' spans continue it.
//!
//! Spans go to an in-memory exporter through the same layer the binary installs
//! (`api::telemetry::layer`), installed as this process's global subscriber, as the binary
//! does: a thread-local one would miss spans that other threads enter and leave (SQLite's
//! connection threads enter the caller's span; the registry then closes it through the
//! exiting thread's default subscriber, so it would never end). Hence a test binary of its
//! own. Each test uses a trace id of its own, so tests running at once do not mix.

#[macro_use]
#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use api::auth::Role;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

use crate::support::*;

/// The caller's span (the W3C specification's example id), in a trace of each test's own.
const CALLER_SPAN: &str = "00f067aa0ba902b7";

struct Recorder {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

/// The process's recorder, installed once as the global subscriber.
fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = tracing_subscriber::registry().with(api::telemetry::layer(&provider));
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber of this test binary");
        Recorder {
            exporter,
            _provider: provider,
        }
    })
}

/// A trace id no other test uses.
fn new_trace() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Recorder {
    fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().expect("the exporter's spans")
    }

    /// Waits until a finished span named `name` in `trace` has `parent` (when given) and
    /// the attribute `with` (when given).
    async fn span(&self, name: &str, trace: TraceId, parent: Option<SpanId>, with: Option<(&str, &str)>) -> SpanData {
        let wanted = |s: &SpanData| {
            s.name == name
                && s.span_context.trace_id() == trace
                && parent.is_none_or(|p| s.parent_span_id == p)
                && with.is_none_or(|(k, v)| attribute(s, k).as_deref() == Some(v))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.spans().into_iter().find(wanted) {
                return span;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<_> = self
                    .spans()
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {}/{} <- {}",
                            s.name,
                            s.span_context.trace_id(),
                            s.span_context.span_id(),
                            s.parent_span_id
                        )
                    })
                    .collect();
                panic!(
                    "no `{name}` span in trace {trace} under {parent:?} with {with:?} within 20 s; finished spans:\n{}",
                    seen.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{CALLER_SPAN}-01")
}

async fn a_traced_http_mutation_is_one_trace_with_its_events_reactions_and_projections(url: String) {
    let recorder = recorder();
    let trace_hex = new_trace();
    let server = spawn_server(url.clone()).await;
    let (admin, alice) = (server.token("ops", Role::Admin), server.token("alice", Role::Customer));
    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;
    let cart_id = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart_id, "apple", 2).await;

    let response = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .bearer_auth(&alice)
        .header("traceparent", traceparent(&trace_hex))
        .header("tracestate", "congo=t61rcWkgMzE")
        .json(&json!({"query": "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { order { id } } }", "variables": {"input": {"cartId": cart_id}}}))
        .send()
        .await
        .expect("POST");
    let body: Value = response.json().await.expect("JSON");
    let order_id = body["data"]["placeOrder"]["order"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();

    let trace = TraceId::from_hex(&trace_hex).expect("trace id");
    let caller = SpanId::from_hex(CALLER_SPAN).expect("span id");
    let request = recorder.span("request", trace, Some(caller), None).await;
    assert!(request.parent_span_is_remote, "the caller's span is the request's parent");
    let command = recorder
        .span("command", trace, Some(request.span_context.span_id()), Some(("mutation", "placeOrder")))
        .await;
    let command_id = command.span_context.span_id();

    // The events: the command's span as their trace context, the trace id as correlation id.
    let db = store::connect(&url).await.expect("open the store");
    let events = db.read_stream(&format!("order-{order_id}"), 1, 10).await.expect("read the order");
    let placed = events.first().expect("OrderPlaced");
    assert_eq!(placed.metadata.correlation_id, Some(uuid::Uuid::parse_str(&trace_hex).expect("uuid")));
    let carried = placed.metadata.trace.as_ref().expect("the event carries its trace");
    assert_eq!(carried.traceparent, format!("00-{trace_hex}-{command_id}-01"));
    assert_eq!(carried.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));

    // The workers continue it: projections of the order's events and the fulfilment
    // reaction hang under the command; the reaction's own command, and its events'
    // projection, under the reaction.
    let projected = recorder.span("project", trace, Some(command_id), Some(("worker", "orders"))).await;
    assert!(projected.parent_span_is_remote, "{projected:?}");
    let reaction = recorder.span("react", trace, Some(command_id), Some(("worker", "fulfilment"))).await;
    let reaction_id = reaction.span_context.span_id();
    let commit = recorder.span("mailbox.commit", trace, Some(reaction_id), None).await;
    recorder.span("store.append", trace, Some(commit.span_context.span_id()), None).await;
    recorder.span("project", trace, Some(reaction_id), Some(("worker", "orders"))).await;
    let started = eventually(Duration::from_secs(20), "the reaction's event", || async {
        let events = db.read_stream(&format!("order-{order_id}"), 2, 10).await.ok()?;
        events.into_iter().next()
    })
    .await;
    assert_eq!(started.metadata.correlation_id, placed.metadata.correlation_id);
    assert!(
        started.metadata.trace.as_ref().is_some_and(|t| t.traceparent.contains(&trace_hex)),
        "{:?}",
        started.metadata
    );

    // Requests without a traceparent start traces of their own, which their events record;
    // their correlation id stays the request id.
    assert!(recorder.spans().iter().any(|s| s.name == "request" && s.span_context.trace_id() != trace));
    let created = db.read_stream(&format!("cart-{cart_id}"), 1, 1).await.expect("read the cart");
    let own = created[0].metadata.trace.as_ref().expect("the cart's trace");
    assert!(!own.traceparent.contains(&trace_hex), "{own:?}");
    let own_trace = own.traceparent.split('-').nth(1).expect("a trace id");
    assert_ne!(
        created[0].metadata.correlation_id.map(|c| c.simple().to_string()).as_deref(),
        Some(own_trace)
    );
    server.stop().await;
}

async fn a_traceparent_in_connection_init_parents_websocket_operations(url: String) {
    let recorder = recorder();
    let trace_hex = new_trace();
    let server = spawn_server(url.clone()).await;
    let mut ws = ws_connect(&server, "graphql-transport-ws", None).await.expect("connect");
    let payload = json!({"token": server.token("ops", Role::Admin), "traceparent": traceparent(&trace_hex)});
    ws_send(&mut ws, json!({"type": "connection_init", "payload": payload})).await;
    assert_eq!(ws_next_json(&mut ws, Duration::from_secs(10)).await["type"], "connection_ack");
    let query = "mutation { registerProduct(input: {sku: \"pear\", name: \"Pear\", price: \"1.00\"}) { position } }";
    ws_send(&mut ws, json!({"id": "1", "type": "subscribe", "payload": {"query": query}})).await;
    let answer = ws_next_json(&mut ws, Duration::from_secs(10)).await;
    assert!(answer["payload"]["data"]["registerProduct"]["position"].is_string(), "{answer}");

    let trace = TraceId::from_hex(&trace_hex).expect("trace id");
    let operation = recorder
        .span("operation", trace, Some(SpanId::from_hex(CALLER_SPAN).expect("span id")), None)
        .await;
    let command = recorder.span("command", trace, Some(operation.span_context.span_id()), None).await;
    let commit = recorder.span("mailbox.commit", trace, Some(command.span_context.span_id()), None).await;
    recorder.span("store.append", trace, Some(commit.span_context.span_id()), None).await;
    recorder
        .span("project", trace, Some(command.span_context.span_id()), Some(("worker", "products")))
        .await;

    let db = store::connect(&url).await.expect("open the store");
    let events = db.read_stream("product-pear", 1, 10).await.expect("read the product");
    assert_eq!(events[0].metadata.correlation_id, Some(uuid::Uuid::parse_str(&trace_hex).expect("uuid")));
    server.stop().await;
}

on_both_backends!(
    a_traced_http_mutation_is_one_trace_with_its_events_reactions_and_projections,
    a_traceparent_in_connection_init_parents_websocket_operations,
);

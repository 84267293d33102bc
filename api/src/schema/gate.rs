//! What every operation passes once before async-graphql executes it, over HTTP and
//! WebSocket alike, and the codes on every error it answers:
//! 1. no string of the variables holds a NUL (`bad_text`);
//! 2. the document parses (else GRAPHQL_PARSE_FAILED; parsed documents are reused by text,
//!    see `documents`), and no inline argument holds a NUL;
//! 3. an admin-only root field is refused unless the caller is an admin (`admin_only`),
//!    and, when introspection is off, `__schema`/`__type` are refused (`introspection`);
//! 4. async-graphql validates and executes the parsed document;
//! 5. errors without a code get one (`error::coded_response`), and the request is counted
//!    (`operation_metrics`).
//!
//! A subscription also gets its [`DocumentKey`], so that subscribers with the same document
//! share the rendering of each change (`shared_changes`).
//!
//! These were async-graphql extensions. An extension of any kind, even one with no
//! `resolve` hook, makes async-graphql wrap the resolution of every field of every
//! response (a lookup of the field's type by name, a `ResolveInfo`, a chain of boxed
//! futures per extension): with four of them, a `cart(id)` read served 4,673/s against
//! 6,080/s without (bench, 32 clients). Here each step runs once per operation.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::{Data, Request, Response, ServerError};

use super::operation_metrics::Seen;
use super::shared_changes::DocumentKey;
use super::{admin_only, bad_text, introspection, AppSchema};
use crate::auth::Principal;
use crate::error::{code, coded_response, with_default_code};
use crate::telemetry::ReceivedTrace;

/// Steps 1-3: refused, or what the document holds (for the metrics).
fn admit(schema: &AppSchema, request: &mut Request, session: Option<&Data>) -> Result<Seen, ServerError> {
    bad_text::check_variables(&request.variables)?;
    let who = principal_in(&request.data).or_else(|| session.and_then(principal_in)).cloned();
    let name = request.operation_name.clone();
    let doc = schema
        .documents
        .parse(request)
        .map_err(|e| with_default_code(e, code::GRAPHQL_PARSE_FAILED))?;
    bad_text::check_document(doc)?;
    admin_only::check(doc, who.as_ref())?;
    introspection::check(doc, schema.introspection)?;
    Ok(Seen::of(doc, name.as_deref()))
}

/// The caller: request data over HTTP, connection data over WebSocket.
fn principal_in(data: &Data) -> Option<&Principal> {
    data.get(&std::any::TypeId::of::<Principal>())?.downcast_ref()
}

pub(super) async fn execute(schema: &AppSchema, mut request: Request) -> Response {
    let started = Instant::now();
    let (response, seen) = match admit(schema, &mut request, None) {
        Ok(seen) => (schema.schema.execute(request).await, Some(seen)),
        Err(refusal) => (Response::from_errors(vec![refusal]), None),
    };
    Seen::record(seen.as_ref(), &response, started.elapsed());
    coded_response(response)
}

pub(super) fn execute_stream(schema: &AppSchema, mut request: Request, session: Option<Arc<Data>>) -> BoxStream<'static, Response> {
    let span = operation_span(session.as_deref());
    let _entered = span.enter();
    let responses = match admit(schema, &mut request, session.as_deref()) {
        Ok(_) => {
            if let Some(key) = DocumentKey::of(&request) {
                request.data.insert(key);
            }
            schema
                .schema
                .execute_stream_with_session_data(request, session.unwrap_or_default())
                .map(coded_response)
                .boxed()
        }
        Err(refusal) => stream::once(async move { coded_response(Response::from_errors(vec![refusal])) }).boxed(),
    };
    drop(_entered);
    InSpan { span, inner: responses }.boxed()
}

/// A WebSocket operation's span: under the connection's, or, when the trace came with
/// `connection_init` (after the connection's span began), under that trace.
fn operation_span(session: Option<&Data>) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let received = session.and_then(|data| data.get(&std::any::TypeId::of::<ReceivedTrace>())?.downcast_ref::<ReceivedTrace>());
    let span = tracing::info_span!("operation", transport = "websocket");
    if let Some(received) = received {
        let trace_id = |cx: &opentelemetry::Context| cx.span().span_context().trace_id();
        if trace_id(&tracing::Span::current().context()) != trace_id(&received.context) {
            // Err only when no layer exports spans.
            let _ = span.set_parent(received.context.clone());
        }
    }
    span
}

/// Polls a stream of responses in a span (the resolvers run while it is polled).
struct InSpan {
    span: tracing::Span,
    inner: BoxStream<'static, Response>,
}

impl async_graphql::futures_util::Stream for InSpan {
    type Item = Response;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Response>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        this.inner.poll_next_unpin(cx)
    }
}

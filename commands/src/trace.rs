//! Distributed traces across the event store: a command records the trace it runs in
//! (W3C Trace Context) in its events' metadata, and whoever consumes the events later
//! (projections, reactors, another process) continues that trace. So one trace shows a
//! mutation, the events it appended and what the workers did with them.
//!
//! The metadata's format is fixed to W3C `traceparent`/`tracestate`, whatever propagator
//! the process configures for its own transports: events outlive configurations. The codec
//! is opentelemetry_sdk's `TraceContextPropagator` (the reference implementation), used
//! here as a parser only; exporting is the binary's business (`api::telemetry`).
//!
//! Everything here works on `tracing` spans through `tracing-opentelemetry`. Until the
//! process installs its OpenTelemetry layer (and says so with [`enable`]), events' traces
//! are only copied along, never parsed: without export this costs nothing measurable.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use store::{Metadata, TraceContext};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Says that spans are exported from now on (`api::telemetry` calls it when it builds its
/// layer): [`current`] then reads the current span and [`follow`] parses events' traces.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Most links one span gets from a batch of events of different traces.
pub const MAX_LINKS: usize = 32;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The remote context a W3C carrier holds (`None` when it holds no valid one).
pub fn extract(carrier: &dyn Extractor) -> Option<Context> {
    // From an empty context: `extract` would fall back to the current one.
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), carrier);
    let found = cx.span().span_context().is_valid() && cx.span().span_context().is_remote();
    found.then_some(cx)
}

/// The remote context recorded in an event's metadata.
pub fn remote(metadata: &Metadata) -> Option<Context> {
    metadata.trace.as_ref().and_then(|trace| extract(&Carrier(trace)))
}

/// The trace id of a context as a UUID (both are 16 bytes): the correlation id of the
/// events a traced request appends, so events and traces are joined by one value.
pub fn trace_uuid(cx: &Context) -> Uuid {
    Uuid::from_bytes(cx.span().span_context().trace_id().to_bytes())
}

/// What a command records: the current span's context when spans are exported (the
/// consumers then hang under the command's span), else `received`, the context the
/// operation arrived with, passed on unchanged so the trace crosses a process that does
/// not export (W3C asks every participant to propagate).
pub fn current(received: Option<&TraceContext>) -> Option<TraceContext> {
    if !enabled() {
        return received.cloned();
    }
    let own = tracing::Span::current().context();
    if !own.span().span_context().is_valid() {
        return received.cloned();
    }
    carrier(&own)
}

/// A context in its W3C form (`None` for an invalid one).
pub fn carrier(cx: &Context) -> Option<TraceContext> {
    let mut carrier = TraceContext::default();
    TraceContextPropagator::new().inject_context(cx, &mut CarrierMut(&mut carrier));
    (!carrier.traceparent.is_empty()).then_some(carrier)
}

/// Makes a (not yet entered) span continue the traces of the events (or commands) it
/// handles. All from one trace (a mutation's events, the usual live batch): the span's
/// parent is the first one's span, so the trace shows it under the command. From several
/// traces (a catch-up batch, a group commit): parenting on one would misattribute the
/// others' work, so the span starts its own trace and links to each (at most
/// [`MAX_LINKS`]), as OpenTelemetry's messaging conventions do for batch consumers.
pub fn follow<'a>(span: &tracing::Span, traces: impl IntoIterator<Item = &'a TraceContext>) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let mut first: Option<Context> = None;
    let mut links: Vec<SpanContext> = Vec::new();
    let mut one_trace = true;
    for cx in traces.into_iter().filter_map(|trace| extract(&Carrier(trace))) {
        let sc = cx.span().span_context().clone();
        one_trace &= links.first().is_none_or(|l| l.trace_id() == sc.trace_id());
        if links.len() < MAX_LINKS && !links.iter().any(|l| l.trace_id() == sc.trace_id() && l.span_id() == sc.span_id()) {
            links.push(sc);
        }
        first.get_or_insert(cx);
    }
    match first {
        None => {}
        // Err only when no layer records spans, or when the span was entered already.
        Some(first) if one_trace => drop(span.set_parent(first)),
        Some(_) => links.into_iter().for_each(|l| span.add_link(l)),
    }
}

/// Reads a stored trace context as the propagator reads headers.
pub struct Carrier<'a>(pub &'a TraceContext);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.0.traceparent.as_str()),
            TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct CarrierMut<'a>(&'a mut TraceContext);

impl Injector for CarrierMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.0.traceparent = value,
            TRACESTATE if !value.is_empty() => self.0.tracestate = Some(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(traceparent: &str) -> Metadata {
        Metadata {
            trace: Some(TraceContext {
                traceparent: traceparent.to_owned(),
                tracestate: Some("congo=t61rcWkgMzE".to_owned()),
            }),
            ..Metadata::default()
        }
    }

    #[test]
    fn reads_what_it_writes_and_ignores_what_is_not_a_trace() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = remote(&metadata(tp)).expect("a valid traceparent");
        assert_eq!(trace_uuid(&cx).simple().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let received = metadata(tp).trace;
        assert_eq!(current(received.as_ref()), received, "no layer here: the received context passes on");

        assert!(remote(&metadata("00-00000000000000000000000000000000-00f067aa0ba902b7-01")).is_none());
        assert!(remote(&metadata("not a traceparent")).is_none());
        assert!(remote(&Metadata::default()).is_none());
        assert!(current(None).is_none());
    }
}

//! Logs and traces. Logs go to stdout (pretty or JSON). Spans are exported with OTLP only
//! when the standard OpenTelemetry variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER=otlp`; `OTEL_SDK_DISABLED`
//! and `OTEL_TRACES_EXPORTER=none` win): without them no OpenTelemetry layer is installed,
//! so spans cost what `tracing` already costs. The exporter, its batching, sampling
//! (`OTEL_TRACES_SAMPLER`) and resource (`OTEL_RESOURCE_ATTRIBUTES`) read the other
//! `OTEL_*` variables themselves; the service name defaults to `cartsource`.
//!
//! Incoming W3C Trace Context (`traceparent`, `tracestate`) is accepted on every HTTP
//! request (the parent of its span) and on WebSocket upgrades and `connection_init`
//! payloads ([`ReceivedTrace`]). A traced mutation's events record the trace and take its
//! id as correlation id; the workers that consume them continue it (`commands::trace`).

use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat};

/// What the service calls itself unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "cartsource";
/// How long the exit waits for the last spans to leave.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The trace context an operation arrived with: the parent of its spans and what its
/// commands pass on.
#[derive(Clone, Debug)]
pub struct ReceivedTrace {
    pub context: Context,
    pub carried: store::TraceContext,
}

impl ReceivedTrace {
    /// From request headers (`None` without a valid `traceparent`).
    pub fn from_headers(headers: &HeaderMap) -> Option<ReceivedTrace> {
        ReceivedTrace::extract(&opentelemetry_http::HeaderExtractor(headers))
    }

    /// From a WebSocket `connection_init` payload: `traceparent` at the top or under
    /// `headers`, as clients put their token.
    pub fn from_payload(payload: &serde_json::Value) -> Option<ReceivedTrace> {
        let fields = if payload.get("traceparent").is_some() {
            payload
        } else {
            payload.get("headers")?
        };
        ReceivedTrace::extract(&JsonCarrier(fields))
    }

    fn extract(carrier: &dyn Extractor) -> Option<ReceivedTrace> {
        let context = commands::trace::extract(carrier)?;
        let carried = commands::trace::carrier(&context)?;
        Some(ReceivedTrace { context, carried })
    }

    /// The correlation id of the events this operation appends.
    pub fn correlation_id(&self) -> uuid::Uuid {
        commands::trace::trace_uuid(&self.context)
    }
}

struct JsonCarrier<'a>(&'a serde_json::Value);

impl Extractor for JsonCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(serde_json::Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
    }
}

/// The layer that turns `tracing` spans into OpenTelemetry spans of `provider` (the binary
/// and the tests use the same); building it turns on the continuation of events' traces
/// (`commands::trace::enable`). Spans of `info` and above whatever `RUST_LOG` says, so
/// quieter logs do not thin out traces.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    commands::trace::enable();
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
}

/// Whether the environment asks for OTLP export (see the module's doc).
pub fn export_requested(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "none" => false,
        Some(v) if v.split(',').any(|e| e.trim() == "otlp") => true,
        _ => set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    }
}

/// Keeps the exporter until the process ends; [`Telemetry::shutdown`] sends what is left.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (blocking, bounded: run it off the async workers).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(error = %e, "could not flush the last spans");
            }
        }
    }
}

/// Installs logging, and span export when asked for.
pub fn init(config: &Config) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer();
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![match config.log_format {
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).with_filter(filter).boxed(),
    }];
    let (provider, failure) = if export_requested(|name| std::env::var(name).ok()) {
        match otlp_provider() {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    if let Some(provider) = &provider {
        layers.push(layer(provider).boxed());
    }
    if let Err(e) = tracing_subscriber::registry().with(layers).try_init() {
        eprintln!("logging already initialised: {e}");
    }
    match (&provider, failure) {
        (Some(_), _) => {
            tracing::info!("exporting traces with OTLP (OTEL_* variables)");
            // Only OTLP over HTTP with protobuf is built in: say so rather than ignore it.
            for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
                if let Some(protocol) = std::env::var(var).ok().filter(|p| p != "http/protobuf") {
                    tracing::warn!(%var, %protocol, "this build exports traces with http/protobuf only; point the endpoint at an OTLP/HTTP receiver (usually port 4318)");
                }
            }
        }
        (None, Some(e)) => tracing::error!(error = %e, "cannot export traces with OTLP; check the OTEL_EXPORTER_OTLP_* variables"),
        (None, None) => {}
    }
    Telemetry { provider }
}

/// The OTLP/HTTP exporter behind a batching processor (its own thread: exporting never
/// holds up a request).
fn otlp_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn export_only_when_the_standard_variables_ask_for_it() {
        assert!(!export_requested(env(&[])));
        assert!(export_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")])));
        assert!(export_requested(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(export_requested(env(&[("OTEL_TRACES_EXPORTER", "otlp")])));
        assert!(!export_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(!export_requested(env(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")
        ])));
        assert!(!export_requested(env(&[("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "otlp")])));
    }

    #[test]
    fn a_trace_is_received_from_headers_or_a_connection_init_payload() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", tp.parse().expect("header"));
        let received = ReceivedTrace::from_headers(&headers).expect("a trace");
        assert_eq!(received.carried.traceparent, tp);
        assert_eq!(received.correlation_id().simple().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        let nested = ReceivedTrace::from_payload(&serde_json::json!({"headers": {"traceparent": tp}})).expect("under headers");
        assert_eq!(nested.carried.traceparent, tp);
        assert!(ReceivedTrace::from_payload(&serde_json::json!({"traceparent": tp})).is_some());
        assert!(ReceivedTrace::from_payload(&serde_json::json!({"traceparent": "00-zz"})).is_none());
        assert!(ReceivedTrace::from_headers(&HeaderMap::new()).is_none());
    }
}

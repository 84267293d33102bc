//! Prometheus metrics through the `metrics` facade; `/metrics` renders them.
//!
//! Labels come from bounded sets only (the schema's root field names, the contract's
//! error codes, projection names): never from client-chosen text such as operation names.
//! Gauges that describe the read side (head position, projection position and lag) are
//! sampled when `/metrics` is scraped, so an idle process does no work for them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "cartsource_graphql_requests_total";
pub const REQUEST_SECONDS: &str = "cartsource_graphql_request_duration_seconds";
pub const COMMANDS: &str = "cartsource_commands_total";
pub const RATE_LIMITED: &str = "cartsource_rate_limited_total";
pub const RATE_LIMIT_FALLBACKS: &str = "cartsource_rate_limit_store_fallbacks_total";
pub const WS_CONNECTIONS: &str = "cartsource_websocket_connections";
pub const WS_SUBSCRIPTIONS: &str = "cartsource_websocket_subscriptions";
pub const WS_REFUSED: &str = "cartsource_websocket_refused_total";
pub const APPENDS: &str = "cartsource_appends_total";
pub const EVENTS_APPENDED: &str = "cartsource_events_appended_total";
pub const APPEND_SECONDS: &str = "cartsource_append_duration_seconds";
pub const HEAD_POSITION: &str = "cartsource_event_store_head_position";
pub const PROJECTION_POSITION: &str = "cartsource_projection_position";
pub const PROJECTION_LAG: &str = "cartsource_projection_lag_events";
pub const PROJECTION_UP: &str = "cartsource_projection_running";

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide recorder. Installed once: several servers in one test process share it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "default histogram buckets");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            // Another recorder (a test harness) owns the facade; `/metrics` renders an empty registry.
            tracing::warn!(error = %e, "metrics recorder already installed");
        }
        describe();
        // Present from the first scrape, before any WebSocket comes.
        gauge!(WS_CONNECTIONS).increment(0.0);
        gauge!(WS_SUBSCRIPTIONS).increment(0.0);
        handle
    })
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "GraphQL requests by operation type, root field and outcome");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "GraphQL request latency by operation type and root field"
    );
    metrics::describe_counter!(COMMANDS, "Mutations by command and outcome (ok or the contract's error code)");
    metrics::describe_counter!(RATE_LIMITED, "Requests answered RATE_LIMITED");
    metrics::describe_gauge!(WS_CONNECTIONS, "Open GraphQL WebSocket connections");
    metrics::describe_gauge!(WS_SUBSCRIPTIONS, "Active subscriptions over WebSocket");
    metrics::describe_counter!(WS_REFUSED, "WebSocket connections refused or closed by a limit, by reason");
    metrics::describe_counter!(APPENDS, "Event store appends by this process, by outcome");
    metrics::describe_counter!(EVENTS_APPENDED, "Events appended by this process");
    metrics::describe_histogram!(APPEND_SECONDS, metrics::Unit::Seconds, "Event store append latency");
    metrics::describe_gauge!(HEAD_POSITION, "Last position of the global event log");
    metrics::describe_gauge!(PROJECTION_POSITION, "Position each projection has applied");
    metrics::describe_gauge!(PROJECTION_LAG, "Events between the log's head and each projection");
    metrics::describe_gauge!(PROJECTION_UP, "1 when the projection is running or catching up");
    use projections::retention as r;
    metrics::describe_counter!(r::ARCHIVED_STREAMS, "Carts archived by the retention policy");
    metrics::describe_counter!(r::ARCHIVED_EVENTS, "Events moved to the archive by the retention policy");
    metrics::describe_counter!(r::SKIPPED, "Retention candidates skipped because they changed since they were picked");
    metrics::describe_counter!(r::ERRORS, "Retention batches that failed");
    metrics::describe_gauge!(r::LAST_BATCH, "When the last retention batch ran (Unix seconds)");
}

/// One executed GraphQL operation. `kind` is query/mutation/subscription (or `invalid`),
/// `field` the root field (or `multiple`), `outcome` `ok` or `error`.
pub fn request(kind: &'static str, field: &str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(REQUESTS, "type" => kind, "operation" => field.to_owned(), "outcome" => outcome).increment(1);
    histogram!(REQUEST_SECONDS, "type" => kind, "operation" => field.to_owned()).record(elapsed.as_secs_f64());
}

/// One mutation field's result: `ok` or the contract's error code.
pub fn command(name: &str, outcome: &str) {
    counter!(COMMANDS, "command" => name.to_owned(), "outcome" => outcome.to_owned()).increment(1);
}

pub fn rate_limited() {
    counter!(RATE_LIMITED).increment(1);
}

/// A rate-limit decision made by this process alone because the shared store failed.
pub fn rate_limit_fallback() {
    counter!(RATE_LIMIT_FALLBACKS).increment(1);
}

pub fn ws_connection(delta: f64) {
    gauge!(WS_CONNECTIONS).increment(delta);
}

pub fn ws_subscriptions(delta: f64) {
    gauge!(WS_SUBSCRIPTIONS).increment(delta);
}

pub fn ws_refused(reason: &'static str) {
    counter!(WS_REFUSED, "reason" => reason).increment(1);
}

pub fn append(outcome: &'static str, events: usize, elapsed: Duration) {
    counter!(APPENDS, "outcome" => outcome).increment(1);
    if outcome == "ok" {
        counter!(EVENTS_APPENDED).increment(events as u64);
    }
    histogram!(APPEND_SECONDS).record(elapsed.as_secs_f64());
}

pub fn head_position(position: u64) {
    gauge!(HEAD_POSITION).set(position as f64);
}

pub fn projection(name: &str, position: u64, head: u64, running: bool) {
    gauge!(PROJECTION_POSITION, "projection" => name.to_owned()).set(position as f64);
    gauge!(PROJECTION_LAG, "projection" => name.to_owned()).set(head.saturating_sub(position) as f64);
    gauge!(PROJECTION_UP, "projection" => name.to_owned()).set(if running { 1.0 } else { 0.0 });
}

/// The text exposition; runs the recorder's upkeep first so histograms stay bounded.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// The event store as the API's commands see it: every call delegated, appends counted
/// and timed. (Projections and reactors append through their own handle.)
pub struct MeteredStore {
    inner: std::sync::Arc<dyn store::EventStore>,
}

impl MeteredStore {
    pub fn wrap(inner: std::sync::Arc<dyn store::EventStore>) -> std::sync::Arc<dyn store::EventStore> {
        std::sync::Arc::new(MeteredStore { inner })
    }
}

#[async_trait::async_trait]
impl store::EventStore for MeteredStore {
    async fn append(&self, request: store::AppendRequest) -> Result<store::AppendOutcome, store::StoreError> {
        let started = std::time::Instant::now();
        let events = request.streams.iter().map(|s| s.events.len()).sum();
        let result = self.inner.append(request).await;
        let outcome = match &result {
            Ok(outcome) if outcome.replayed => "replayed",
            Ok(_) => "ok",
            Err(store::StoreError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        append(outcome, events, started.elapsed());
        result
    }

    async fn read_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<store::RecordedEvent>, store::StoreError> {
        self.inner.read_stream(stream_id, from_version, limit).await
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, store::StoreError> {
        self.inner.stream_version(stream_id).await
    }

    async fn archive_stream(
        &self,
        stream_id: &str,
        expected: store::ExpectedVersion,
        reason: store::ArchiveReason,
        actor: &str,
    ) -> Result<store::ArchiveOutcome, store::StoreError> {
        self.inner.archive_stream(stream_id, expected, reason, actor).await
    }

    async fn truncate_stream(&self, stream_id: &str, through: u64) -> Result<u64, store::StoreError> {
        self.inner.truncate_stream(stream_id, through).await
    }

    async fn archived_stream(&self, stream_id: &str) -> Result<Option<store::ArchivedStream>, store::StoreError> {
        self.inner.archived_stream(stream_id).await
    }

    async fn read_all(
        &self,
        after: store::Position,
        limit: usize,
        categories: Option<&[String]>,
    ) -> Result<Vec<store::RecordedEvent>, store::StoreError> {
        self.inner.read_all(after, limit, categories).await
    }

    async fn head_position(&self) -> Result<store::Position, store::StoreError> {
        self.inner.head_position().await
    }

    async fn idempotent_outcome(&self, actor: &str, key: &str) -> Result<Option<(String, store::AppendOutcome)>, store::StoreError> {
        self.inner.idempotent_outcome(actor, key).await
    }

    async fn load_snapshot(&self, stream_id: &str, state_schema_version: i32) -> Result<Option<store::Snapshot>, store::StoreError> {
        self.inner.load_snapshot(stream_id, state_schema_version).await
    }

    async fn save_snapshot(&self, snapshot: &store::Snapshot) -> Result<(), store::StoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    fn doorbell(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.doorbell()
    }
}

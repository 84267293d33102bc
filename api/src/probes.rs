//! The operations endpoints: `/healthz` (the process answers), `/readyz` (the database
//! answers with its migrations, projections started, not shutting down) and `/metrics`
//! (Prometheus). The probes stay on the public address; `/metrics` is served there too, or
//! alone on `--metrics-addr` (see `server`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Who answers readiness.
#[derive(Clone)]
pub struct Readiness {
    pub store: Arc<dyn store::EventStore>,
    pub projections: projections::Projections,
    pub shutdown: CancellationToken,
}

/// The probes, served by every role on the public address.
pub fn probe_routes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(readiness))
}

/// `/metrics`: on the public address, or alone on `--metrics-addr`.
pub fn metrics_routes(readiness: Readiness) -> Router {
    Router::new().route("/metrics", get(metrics_text).with_state(readiness))
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    if readiness.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"}))).into_response();
    }
    let head = match readiness.store.head_position().await {
        Ok(head) => head.0,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the event store does not answer");
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "database unavailable"}))).into_response();
        }
    };
    let replica = match crate::replica::readiness(&readiness.projections, head).await {
        Ok(replica) => replica,
        Err(unavailable) => return unavailable,
    };
    match readiness.projections.statuses().await {
        Ok(statuses) => {
            let projections: Vec<_> = statuses
                .iter()
                .map(|s| json!({"name": s.name, "state": s.state.as_str(), "position": s.position.0, "lag": head.saturating_sub(s.position.0)}))
                .collect();
            let mut body = json!({"status": "ready", "head": head, "projections": projections});
            if let Some(replica) = replica {
                body["replica"] = replica;
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: projection statuses unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "projections unavailable"}))).into_response()
        }
    }
}

async fn metrics_text(State(readiness): State<Readiness>) -> Response {
    if let Ok(head) = readiness.store.head_position().await {
        metrics::head_position(head.0);
        if let Ok(statuses) = readiness.projections.statuses().await {
            for s in statuses {
                let running = matches!(s.state, projections::ProjectionState::Running | projections::ProjectionState::CatchingUp);
                metrics::projection(&s.name, s.position.0, head.0, running);
            }
        }
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        metrics::render(),
    )
        .into_response()
}

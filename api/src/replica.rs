//! The optional read replica (`--read-database-url`): checked and opened at start-up, and
//! reported by readiness. The read models' queries go there through
//! [`projections::ReadModels`]; nothing else of the API uses it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::Config;
use crate::server::StartError;

/// A configuration error, said before anything is opened: SQLite has no replicas.
pub(crate) fn check(config: &Config) -> Result<(), StartError> {
    if config.read_replica.read_database_url.is_some() && !config.database_url().starts_with("postgres") {
        return Err(StartError::ReplicaWithoutPostgres);
    }
    Ok(())
}

/// The replica's pool when one is configured and this process serves the API (workers
/// never read from it); sized by `--read-database-pool-size`, else as the primary's.
pub(crate) async fn open(config: &Config, options: store::PgStoreOptions) -> Result<Option<store::PgPool>, StartError> {
    let Some(url) = config.read_replica.read_database_url.as_deref().filter(|_| config.role.serves_api()) else {
        return Ok(None);
    };
    let options = store::PgStoreOptions {
        max_connections: config.read_replica.read_database_pool_size.unwrap_or(config.database_pool_size),
        ..options
    };
    store::open_read_replica(url, &options).await.map(Some).map_err(StartError::ReadReplica)
}

/// The replica's part of `/readyz` (none without one): whether it replays, and each read
/// model's position there with its lag behind the primary's `head`. A replica that does not
/// answer makes the node unready: its reads would fail.
pub(crate) async fn readiness(projections: &projections::Projections, head: u64) -> Result<Option<serde_json::Value>, Response> {
    let status = match projections.replica_status().await {
        None => return Ok(None),
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the read replica does not answer");
            return Err((StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "read replica unavailable"}))).into_response());
        }
    };
    let positions: Vec<_> = status
        .positions
        .iter()
        .map(|(name, position)| json!({"name": name, "position": position.0, "lag": head.saturating_sub(position.0)}))
        .collect();
    Ok(Some(
        json!({"in_recovery": status.in_recovery, "replay_paused": status.replay_paused, "projections": positions}),
    ))
}

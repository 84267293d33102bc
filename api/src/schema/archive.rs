//! `archiveStream` (admin, #15): archive one cart on demand, as the retention policy does
//! for idle ones. Only cart streams: orders are business records kept for their legal
//! retention period, and products are referenced by open carts and orders; the store can
//! archive any stream, the API does not offer it.

use async_graphql::{Context, SimpleObject};

use super::scalars::Position;
use super::{admin, api};
use crate::error::ApiError;

/// What archiving a stream did.
#[derive(SimpleObject)]
pub struct ArchivePayload {
    pub stream_id: String,
    /// The stream's last version; it is never reused.
    pub version: i64,
    /// Events moved out of the hot table by this call (0 if it was archived before).
    pub events_moved: i64,
    pub already_archived: bool,
    /// The position of the StreamArchived event (stream "archive-log"): the carts read model
    /// has dropped the cart once it applied it (wait with minPosition). Null if the stream
    /// was archived before.
    pub position: Option<Position>,
}

pub(super) async fn archive_stream(ctx: &Context<'_>, stream_id: String) -> Result<ArchivePayload, ApiError> {
    let who = admin(ctx)?;
    let cart = domain::StreamId::parse(&stream_id).filter(|s| matches!(s, domain::StreamId::Cart(_)));
    if cart.is_none() {
        return Err(ApiError::BadUserInput(
            "only cart streams (\"cart-<uuid>\") can be archived: orders and products are kept".to_owned(),
        ));
    }
    let outcome = api(ctx)?
        .store
        .archive_stream(&stream_id, store::ExpectedVersion::Any, store::ArchiveReason::Admin, &who.id)
        .await
        .map_err(|e| match e {
            // A cart id nobody used: nothing to archive, and no tombstone to block it.
            store::StoreError::InvalidRequest(_) => ApiError::NotFound("cart".to_owned()),
            other => other.into(),
        })?;
    tracing::info!(stream = %stream_id, admin = %who.id, moved = outcome.moved, "stream archived");
    Ok(ArchivePayload {
        stream_id,
        version: i64::try_from(outcome.version).unwrap_or(i64::MAX),
        events_moved: i64::try_from(outcome.moved).unwrap_or(i64::MAX),
        already_archived: outcome.already,
        position: outcome.position.map(Position),
    })
}

/// What truncating a stream did.
#[derive(SimpleObject)]
pub struct TruncatePayload {
    pub stream_id: String,
    /// Events at versions up to this one now live in the archive (0: nothing to move).
    pub truncated_through: i64,
    /// Events moved by this call.
    pub events_moved: i64,
}

/// `truncateStream` (admin): moves a product stream's events behind its newest snapshot to
/// the archive. Products are the long streams (years of stock events); loads start at the
/// snapshot and never read the archive, while history and the feed still show every event.
pub(super) async fn truncate_stream(ctx: &Context<'_>, stream_id: String) -> Result<TruncatePayload, ApiError> {
    let who = admin(ctx)?;
    if !matches!(domain::StreamId::parse(&stream_id), Some(domain::StreamId::Product(_))) {
        return Err(ApiError::BadUserInput(
            "only product streams (\"product-<sku>\") can be truncated".to_owned(),
        ));
    }
    let store = &api(ctx)?.store;
    let snapshot = store
        .load_snapshot(&stream_id, <commands::ProductAggregate as commands::Aggregate>::STATE_SCHEMA_VERSION)
        .await?
        .ok_or_else(|| ApiError::BadUserInput(format!("{stream_id} has no snapshot yet (one is saved every 50 events)")))?;
    // The store keeps the last event (appends check that it exists): behind the snapshot,
    // and never the head. Versions only grow, so this bound stays true.
    let through = snapshot.version.min(store.stream_version(&stream_id).await?.saturating_sub(1));
    let moved = store.truncate_stream(&stream_id, through).await?;
    tracing::info!(stream = %stream_id, admin = %who.id, through, moved, "stream truncated");
    Ok(TruncatePayload {
        stream_id,
        truncated_through: i64::try_from(through).unwrap_or(i64::MAX),
        events_moved: i64::try_from(moved).unwrap_or(i64::MAX),
    })
}

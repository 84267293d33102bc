//! The store side: the store's public API used exactly as the command path (`commands`)
//! uses it. Appends carry domain events encoded by `commands::encode` with a command's
//! metadata and `ExpectedVersion::Exact(version)` (`Exact(0)` for a new stream, as the
//! mailbox does); loads read pages of 1,000 with `load_stream` like `commands` folds a
//! stream and decode each event with `commands::decode_loaded`; the feed is read like the
//! projections read it.

use std::sync::Arc;

use domain::CartEvent;
use store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, Position};
use uuid::Uuid;

use super::BoxError;

/// Page size of `commands`' stream fold and of the feed reads.
pub(super) const PAGE: usize = 1_000;

/// The metadata a command gives its events (`CommandContext::metadata`).
pub(super) fn metadata() -> Metadata {
    Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: None,
        actor: Uuid::new_v4().to_string(),
        idempotency_key: None,
        trace: None,
    }
}

pub(super) fn encode(events: &[CartEvent]) -> Vec<NewEvent> {
    let metadata = metadata();
    events.iter().map(|e| commands::encode(e, &metadata)).collect()
}

/// W1: one event to a new stream.
pub(super) async fn append_new(store: &Arc<dyn EventStore>, event: &CartEvent) -> Result<u64, BoxError> {
    let request = AppendRequest::single(
        format!("cart-{}", Uuid::new_v4()),
        ExpectedVersion::Exact(0),
        encode(std::slice::from_ref(event)),
    );
    store.append(request).await?;
    Ok(1)
}

/// W2: events after `version` of `stream_id`; returns the stream's new version.
pub(super) async fn append_after(store: &Arc<dyn EventStore>, stream_id: &str, version: u64, events: &[CartEvent]) -> Result<u64, BoxError> {
    let request = AppendRequest::single(stream_id, ExpectedVersion::Exact(version), encode(events));
    let outcome = store.append(request).await?;
    Ok(outcome.streams[0].last_version)
}

/// W3: a stream folded the way `commands` reads it, each event decoded.
pub(super) async fn load(store: &Arc<dyn EventStore>, stream_id: &str) -> Result<Vec<(Position, u64, CartEvent)>, BoxError> {
    let mut out = Vec::new();
    let mut version = 0;
    loop {
        let page = store.load_stream(stream_id, version + 1, PAGE).await?;
        for recorded in &page {
            out.push((
                recorded.position,
                recorded.version,
                commands::decode_loaded::<CartEvent>(stream_id, recorded)?,
            ));
            version = recorded.version;
        }
        if page.len() < PAGE {
            return Ok(out);
        }
    }
}

/// W4: one page of the global feed after `after`, each event decoded; the positions.
pub(super) async fn page(store: &Arc<dyn EventStore>, after: i64) -> Result<Vec<i64>, BoxError> {
    let after = Position(u64::try_from(after).unwrap_or_default());
    let page = store.read_all(after, PAGE, None).await?;
    let mut positions = Vec::with_capacity(page.len());
    for recorded in &page {
        let _decoded: CartEvent = commands::decode(recorded)?;
        positions.push(i64::try_from(recorded.position.0)?);
    }
    Ok(positions)
}

/// Reads a whole log page by page; returns the events read.
pub(super) async fn read_log<P, PF>(page: P) -> Result<usize, BoxError>
where
    P: Fn(i64) -> PF,
    PF: std::future::Future<Output = Result<Vec<i64>, BoxError>>,
{
    let (mut after, mut read) = (0i64, 0usize);
    loop {
        let positions = page(after).await?;
        let Some(&last) = positions.last() else { return Ok(read) };
        after = last;
        read += positions.len();
    }
}

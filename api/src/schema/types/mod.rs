//! The contract's object types, a module per concept. Each is built either from a
//! read-model view (queries) or from an aggregate's state right after a command or at a
//! past version (payloads, `cartAt`, subscriptions); the GraphQL shape is the same either way.

mod cart;
mod cart_event;
mod history_loader;
mod line;
mod money;
mod notification;
mod operations;
mod order;
mod personal_data;
mod product;

use async_graphql::Context;
use time::OffsetDateTime;

pub use cart::{Cart, CartStatus};
pub use cart_event::{CartChange, CartEvent, EventMeta};
pub use history_loader::HistoryLoader;
pub use money::Money;
pub use notification::Notification;
pub use operations::{ProjectionStatus, RecordedEvent};
pub use order::Order;
pub use personal_data::{Address, KeyLoader};
pub use product::Product;

use super::api;
use super::scalars::DateTime;
use crate::error::ApiError;

/// When a stream's first and latest events were recorded. Known up front for views
/// and past states; for a command's payload read from the store only when asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timestamps {
    pub created: Option<OffsetDateTime>,
    pub updated: Option<OffsetDateTime>,
}

impl Timestamps {
    pub fn known(created: OffsetDateTime, updated: OffsetDateTime) -> Self {
        Timestamps {
            created: Some(created),
            updated: Some(updated),
        }
    }
}

/// The recorded time of one event of a stream (for payload timestamps).
async fn recorded_at(ctx: &Context<'_>, stream_id: &str, version: u64) -> Result<DateTime, ApiError> {
    let events = api(ctx)?.store.read_stream(stream_id, version.max(1), 1).await?;
    events
        .first()
        .map(|e| DateTime(e.recorded_at))
        .ok_or_else(|| ApiError::internal(format!("{stream_id} has no event {version}")))
}

//! What admins see of the machinery: projection states and events as stored.

use async_graphql::Object;
use store::RecordedEvent as StoreEvent;

use crate::schema::numbers::to_int;
use crate::schema::scalars::{DateTime, Json, Position};

/// State of one projection or event consumer.
#[derive(Clone, Debug)]
pub struct ProjectionStatus(pub projections::ProjectionStatus);

#[Object(name = "ProjectionStatus")]
impl ProjectionStatus {
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Last global position this projection has applied.
    async fn position(&self) -> Position {
        self.0.position.into()
    }

    /// Last global position in the log.
    async fn head_position(&self) -> Position {
        self.0.head_position.into()
    }

    /// RUNNING, CATCHING_UP, REBUILDING, STOPPED or FAILED.
    async fn state(&self) -> &str {
        self.0.state.as_str()
    }

    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }

    /// The worker (`<host>-<pid>`) that holds or last held this consumer's lease.
    async fn leader(&self) -> Option<&str> {
        self.0.leader.as_deref()
    }
}

/// An event as stored, after upcasting to its current schema.
#[derive(Clone, Debug)]
pub struct RecordedEvent(pub StoreEvent);

#[Object]
impl RecordedEvent {
    async fn position(&self) -> Position {
        self.0.position.into()
    }

    async fn stream_id(&self) -> &str {
        &self.0.stream_id
    }

    async fn version(&self) -> i32 {
        to_int(self.0.version)
    }

    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    async fn schema_version(&self) -> i32 {
        self.0.schema_version
    }

    async fn data(&self) -> Json {
        Json(self.0.data.to_value())
    }

    async fn metadata(&self) -> Json {
        Json(serde_json::to_value(&self.0.metadata).unwrap_or_default())
    }

    async fn occurred_at(&self) -> DateTime {
        self.0.recorded_at.into()
    }
}

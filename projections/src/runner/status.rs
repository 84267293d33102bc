//! What a worker reports: its state, position and error, as operators and `wait_for` see them.

use store::Position;
use time::OffsetDateTime;

use crate::error::ProjectionError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionState {
    Running,
    CatchingUp,
    Rebuilding,
    Stopped,
    Failed,
}

impl ProjectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionState::Running => "RUNNING",
            ProjectionState::CatchingUp => "CATCHING_UP",
            ProjectionState::Rebuilding => "REBUILDING",
            ProjectionState::Stopped => "STOPPED",
            ProjectionState::Failed => "FAILED",
        }
    }

    pub(super) fn parse(text: &str) -> ProjectionState {
        match text {
            "RUNNING" => ProjectionState::Running,
            "CATCHING_UP" => ProjectionState::CatchingUp,
            "REBUILDING" => ProjectionState::Rebuilding,
            "FAILED" => ProjectionState::Failed,
            _ => ProjectionState::Stopped,
        }
    }
}

impl std::fmt::Display for ProjectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    /// Last global position applied.
    pub position: Position,
    /// Last global position a reader can see now.
    pub head_position: Position,
    pub state: ProjectionState,
    pub last_error: Option<String>,
    /// The position of the event that made it FAILED.
    pub error_position: Option<Position>,
    pub updated_at: OffsetDateTime,
    /// While REBUILDING: how far the new copy has got.
    pub rebuild_progress: Option<Position>,
    /// The worker that leads (or last led) it.
    pub leader: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the projection did not reach the position in time")]
    Timeout,
    #[error("the projection has failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Store(ProjectionError),
}

/// The read replica as readiness reports it ([`super::Projections::replica_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// A standby replaying the primary's log (false: a primary, or a promoted standby, that
    /// no longer follows).
    pub in_recovery: bool,
    /// Replay paused (`pg_wal_replay_pause()`): reads there stand still.
    pub replay_paused: bool,
    /// How far each consumer's read model on the replica has applied its feed, by name.
    pub positions: Vec<(String, Position)>,
}

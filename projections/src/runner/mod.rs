//! The workers: one task per projection, reactor and publisher, each a named consumer of
//! the global feed with its checkpoint row.
//!
//! A worker's life: wait for the lease and its fencing token (`leader`),
//! then loop: read the next page of the feed (filtered by the worker's categories) after its
//! checkpoint, apply it and move the checkpoint to the page's last event, in one fenced
//! transaction. Once a page finds nothing left, a worker that is not rebuilding follows the
//! process's shared live feed (`follow`): woken only by events of its categories, it takes
//! them from memory, one transaction per batch of what is ready. Without a live feed
//! (inline handles), or while rebuilding, it sleeps until the store's doorbell rings, a
//! local request (rebuild, resume) nudges it, or the poll interval passes. A page without
//! events writes nothing (only a change of state is recorded), so a worker writes at most
//! one transaction per batch and none for commits it does not consume. How far a worker has
//! got for `wait_for` and the statuses is answered without those writes (`progress`).
//!
//! Errors: transient ones (connection, pool, serialisation, busy) are retried with jittered
//! exponential backoff from the checkpoint; an event that fails otherwise is isolated (the
//! batch is re-applied one event at a time) and the worker goes FAILED with the error and
//! the position of that event. It stays FAILED, the others run on, until an operator calls
//! [`Projections::resume`]. Losing the lease or the fencing token sends the worker back to
//! standby.

use std::time::Duration;

mod config;
mod follow;
mod handle;
mod status;
mod steps;
mod worker;

pub use config::ProjectionsConfig;
pub use handle::Projections;
pub use status::{ProjectionState, ProjectionStatus, ReplicaStatus, WaitError};

use handle::Shared;
use steps::FeedPage;
pub(crate) use worker::Backoff;
pub(crate) use worker::Kind;
use worker::{Step, Term, Worker};

/// The checkpoint name of the NATS publisher.
pub const PUBLISHER: &str = "nats-publisher";
/// Old generations stay this long after a swap, for reads that began before it.
const CLEANUP_DELAY: Duration = Duration::from_secs(10);
/// Longest pause between retries after transient errors.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

//! The read side of cartsource: checkpointed workers that follow the event store's global
//! feed and keep the read models, the reactors that turn events into commands (through the
//! `commands` crate), and the optional publisher to NATS JetStream. Depends on `domain`,
//! `store` and `commands`; knows no HTTP.
//!
//! Decisions, and the invariants they keep:
//!
//! * **Exactly-once effect on read models.** A projection applies a batch of its feed and
//!   moves its checkpoint in ONE transaction of the store's own database (`runner`,
//!   `checkpoint`): a crash never applies an event twice nor skips one. Each entity row also
//!   remembers its stream version and skips events at or below it.
//! * **Fenced checkpoints.** Every checkpoint write names the writer's fencing token (bumped
//!   by each new leader), the position and the generation it started from; a deposed leader
//!   moves nothing. On Postgres each worker runs in the one process holding its lease
//!   (`leader`): renewed every heartbeat by one keeper per process, taken by a standby once it
//!   expires (a dead or frozen leader is replaced within about lease + heartbeat), with a new
//!   token in the same statement. SQLite is single-process: no election.
//! * **Rebuilds without downtime.** Rows carry a generation; readers see the checkpoint's
//!   current one. A rebuild fills the next generation from position 0 while the current one
//!   keeps serving and following, then one transaction swaps generation and position.
//! * **Failures stop one worker, visibly.** Transient errors are retried with backoff; an
//!   event that cannot be applied makes that worker FAILED with the error and the event's
//!   position; the others run on; [`Projections::resume`] tries again.
//! * **Reactors act once.** fulfilment and inventory issue commands through the `commands` crate
//!   with idempotency keys derived from the triggering event and the target stream; the
//!   notification "reactor" is a read model whose rows are keyed by the triggering event.
//! * **Writes only for work.** A worker moves its checkpoint only with a batch of events it
//!   consumes, once per batch; commits to other categories and idle time cost it no write.
//!   Caught up, it follows the process's shared `store::LiveFeed` (given to
//!   [`Projections::start`]): woken only by events of its categories, read from memory.
//!   [`Projections::counters`] counts each local worker's reads and transactions.
//! * **Read-your-writes.** [`Projections::wait_for`] resolves once a projection has applied
//!   a position: its checkpoint is there, or the store's head is and its filtered feed has
//!   no event between its checkpoint and that position (reads only, so it works from any
//!   process, for any position, on every projection); the process running the worker answers
//!   from memory once the worker has applied or read past the position (`progress`).
//! * **Read replica.** With [`ProjectionsConfig::read_replica`] (a Postgres streaming
//!   replica) the read models' queries and the checkpoint rows `wait_for` reads go to the
//!   replica; a checkpoint row commits with the rows it covers, so once the replica shows the
//!   row at a position, the queries that follow see the read model there. Workers, the feed
//!   and every write stay on the primary.
//! * **The bus.** With `nats_url`, every event goes to JetStream in order, each publish
//!   acknowledged before the checkpoint moves (`publisher`).
//! * **Retention** (#15). With [`ProjectionsConfig::retention`], the leader of the
//!   `retention` lease archives open carts idle for longer than the policy (`retention`);
//!   the carts read model drops an archived cart's rows when the store's archive log says so.
//! * **Backends.** Each statement is written for Postgres and for SQLite; rows travel as JSON
//!   so the Rust side is written once (`db`). Tables are in `migrations/*/0002_read_models.sql`.

pub mod checkpoint;
mod db;
pub mod error;
pub mod leader;
mod model;
mod progress;
pub mod publisher;
pub mod reactors;
pub mod retention;
pub mod runner;

pub use error::ProjectionError;
pub use model::analytics::{AnalyticsView, DayStats, SkuStats};
pub use model::carts::CartView;
pub use model::notifications::NotificationView;
pub use model::orders::OrderView;
pub use model::products::ProductView;
pub use model::read_models::{LineView, Page, ReadModels};
pub use model::Model;
pub use progress::WorkerCounters;
pub use retention::{Retention, RetentionConfig};
pub use runner::{ProjectionState, ProjectionStatus, Projections, ProjectionsConfig, ReplicaStatus, WaitError};

//! The retention policy (#15): carts with no event for `idle_for` (30 days by default) that
//! never checked out are archived (`store::EventStore::archive_stream`).
//!
//! * **Who.** A worker role process, and only the one holding the `retention` lease (the same
//!   leases as the projections, `leader`); on SQLite the one process.
//! * **What.** Candidates come from the carts read model (open carts by last change, the
//!   `carts_status_updated_idx` index); each is archived with `ExpectedVersion::Exact` of the
//!   version the read model shows, so a cart that changed since (an item added, a checkout
//!   the read model has not applied yet) is skipped, never archived.
//! * **How fast.** One stream per store transaction (each holds appends back for the few
//!   milliseconds of its move), at most `batch_size` per batch, `pause` between batches, and
//!   `interval` between sweeps once no candidate is left: archiving never stalls writers for
//!   longer than one stream's move.
//! * **Metrics** (the `metrics` facade; the `cartsource` binary exports them):
//!   `cartsource_retention_archived_streams_total`, `cartsource_retention_archived_events_total`,
//!   `cartsource_retention_skipped_total` (changed since it was picked),
//!   `cartsource_retention_errors_total`, `cartsource_retention_last_batch_unix_seconds`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use store::{ArchiveReason, Database, EventStore, ExpectedVersion, StoreError};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::{format_time, Arg, ReadConn, Sql};
use crate::error::ProjectionError;
use crate::leader::Leases;

pub const ARCHIVED_STREAMS: &str = "cartsource_retention_archived_streams_total";
pub const ARCHIVED_EVENTS: &str = "cartsource_retention_archived_events_total";
pub const SKIPPED: &str = "cartsource_retention_skipped_total";
pub const ERRORS: &str = "cartsource_retention_errors_total";
pub const LAST_BATCH: &str = "cartsource_retention_last_batch_unix_seconds";

/// The lease (and checkpoint row) of the retention worker.
pub const RETENTION: &str = "retention";

/// The retention policy and its pace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Open carts with no event for this long are archived.
    pub idle_for: Duration,
    /// Carts archived per batch.
    pub batch_size: usize,
    /// Pause between two batches.
    pub pause: Duration,
    /// Pause between two sweeps (once no candidate is left).
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            idle_for: Duration::from_secs(30 * 24 * 3600),
            batch_size: 100,
            pause: Duration::from_secs(1),
            interval: Duration::from_secs(600),
        }
    }
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Candidates found (at most `batch_size`).
    pub candidates: usize,
    pub archived: usize,
    pub events: u64,
    /// Changed since they were picked, or archived by someone else meanwhile.
    pub skipped: usize,
}

#[derive(Deserialize)]
struct Candidate {
    id: Uuid,
    version: i64,
}

/// Open carts of the served generation, oldest change first, idle since before `$1`, and
/// not archived already (the read model keeps an archived cart's row until it applies the
/// archive-log event; the read models live in the store's database).
const CANDIDATES: Sql = Sql {
    pg: "select json_build_object('id', c.id, 'version', c.version)::text from carts c
          where c.generation = (select generation from projection_checkpoints where name = 'carts')
            and c.status = 'OPEN' and c.updated_at < $1::timestamptz
            and not exists (select 1 from stream_archives a where a.stream_id = 'cart-' || c.id::text)
          order by c.updated_at limit $2",
    lite: "select json_object('id', c.id, 'version', c.version) from carts c
          where c.generation = (select generation from projection_checkpoints where name = 'carts')
            and c.status = 'OPEN' and c.updated_at < $1
            and not exists (select 1 from stream_archives a where a.stream_id = 'cart-' || c.id)
          order by c.updated_at limit $2",
};

/// The retention job: one batch at a time ([`Retention::archive_batch`]), until nothing is
/// left ([`Retention::run_until_done`]: tests and tooling), or for ever as the leader
/// ([`Retention::run`]).
#[derive(Clone)]
pub struct Retention {
    db: Database,
    store: Arc<dyn EventStore>,
    config: RetentionConfig,
    actor: String,
}

impl Retention {
    pub fn new(db: Database, config: RetentionConfig) -> Retention {
        Retention {
            store: db.store(),
            db,
            config,
            actor: "retention".to_owned(),
        }
    }

    /// Archives up to `batch_size` carts idle since before `now - idle_for`.
    pub async fn archive_batch(&self, now: OffsetDateTime) -> Result<BatchOutcome, ProjectionError> {
        let cutoff = now - self.config.idle_for;
        let candidates: Vec<Candidate> = {
            let mut read = ReadConn::acquire(&self.db).await?;
            read.conn()
                .json_rows(
                    CANDIDATES,
                    &[
                        Arg::Text(format_time(cutoff)),
                        Arg::Int(i64::try_from(self.config.batch_size).unwrap_or(i64::MAX)),
                    ],
                )
                .await?
        };
        let mut outcome = BatchOutcome {
            candidates: candidates.len(),
            ..Default::default()
        };
        for candidate in candidates {
            let stream = domain::CartId::from_uuid(candidate.id).stream_id();
            let expected = ExpectedVersion::Exact(u64::try_from(candidate.version).unwrap_or(0));
            match self.store.archive_stream(&stream, expected, ArchiveReason::Retention, &self.actor).await {
                Ok(archived) if archived.already => outcome.skipped += 1,
                Ok(archived) => {
                    outcome.archived += 1;
                    outcome.events += archived.moved;
                }
                Err(StoreError::Conflict { .. }) => outcome.skipped += 1,
                Err(e) => {
                    metrics::counter!(ERRORS).increment(1);
                    return Err(e.into());
                }
            }
        }
        metrics::counter!(ARCHIVED_STREAMS).increment(outcome.archived as u64);
        metrics::counter!(ARCHIVED_EVENTS).increment(outcome.events);
        metrics::counter!(SKIPPED).increment(outcome.skipped as u64);
        metrics::gauge!(LAST_BATCH).set(now.unix_timestamp() as f64);
        tracing::info!(
            candidates = outcome.candidates,
            archived = outcome.archived,
            events = outcome.events,
            skipped = outcome.skipped,
            "retention batch"
        );
        Ok(outcome)
    }

    /// Batches until one finds fewer candidates than a batch holds; returns the carts
    /// archived. No pauses: for tests and tooling.
    pub async fn run_until_done(&self, now: OffsetDateTime) -> Result<usize, ProjectionError> {
        let mut archived = 0;
        loop {
            let batch = self.archive_batch(now).await?;
            archived += batch.archived;
            if batch.candidates < self.config.batch_size || batch.archived == 0 {
                return Ok(archived);
            }
        }
    }

    /// The worker: waits for the `retention` lease, then archives batch after batch while
    /// it holds it, pausing between batches and sweeps; ends at `shutdown`.
    pub(crate) async fn run(self, leases: Arc<Leases>, mut shutdown: watch::Receiver<bool>) {
        // `acquire` on SQLite grants at once, even after shutdown: check first.
        while !*shutdown.borrow() {
            let Some(lease) = leases.acquire(RETENTION, &mut shutdown).await else {
                break;
            };
            while !lease.is_lost() && !*shutdown.borrow() {
                let pause = match self.archive_batch(OffsetDateTime::now_utc()).await {
                    Ok(batch) if batch.candidates >= self.config.batch_size && batch.archived > 0 => self.config.pause,
                    Ok(_) => self.config.interval,
                    Err(e) => {
                        tracing::warn!(error = %e, "retention batch failed; trying again later");
                        self.config.pause.max(Duration::from_secs(5))
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|stop| *stop) => {}
                }
            }
            leases.release(lease).await;
        }
    }
}

//! The production backend: PostgreSQL.
//!
//! * Appends run concurrently, with no global lock. A single-stream append without an
//!   idempotency key is ONE statement in an implicit transaction (one round trip, like a
//!   plain INSERT); multi-stream and idempotent appends use one explicit transaction.
//! * Positions are `(xid << 20) | ordinal` and feed readers read only below the horizon of
//!   their own snapshot (`pg_snapshot_xmin`), which makes the global feed gap-free: the
//!   reasoning, and the failure it prevents, is next to the SQL in
//!   `migrations/postgres/0001_event_store.sql`. Read it before changing a query here.
//! * The unique constraint `events_stream_version_key` arbitrates concurrent appends to one
//!   stream; its violation is recognised by SQLSTATE and constraint name.
//! * Doorbell: our own commits ring the local `watch` at once; a notifier task sends one
//!   `pg_notify` per burst of local commits (never inside the append's transaction: NOTIFY
//!   takes a cluster-wide lock at commit and would serialise every append); a listener task
//!   on its own connection (application_name `cartsource-listener`) rings on every
//!   notification from other processes and whenever its connection was lost. Subscriptions
//!   poll as well, so a lost notification only delays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Acquire, PgConnection, PgExecutor, Postgres, Row, Transaction};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::{
    category_of, check_feed_categories, AppendOutcome, AppendRequest, ExpectedVersion, Metadata, Position, RecordedEvent, Snapshot, StreamAppend,
    StreamOutcome,
};
use crate::event_store::{Backend, EventStore};
use crate::upcast::upcast;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The NOTIFY channel every cartsource process listens on.
pub const CHANNEL: &str = "cartsource_events";
/// `application_name` of the listener's connection (operators and tests find it by this).
pub const LISTENER_APPLICATION_NAME: &str = "cartsource-listener";
/// `application_name` of the notifier's connection.
pub const NOTIFIER_APPLICATION_NAME: &str = "cartsource-notifier";

/// The constraint that makes two appends of the same stream version impossible.
const STREAM_VERSION_KEY: &str = "events_stream_version_key";
/// The constraint that keeps event ids unique.
const EVENT_ID_KEY: &str = "events_event_id_key";
const UNIQUE_VIOLATION: &str = "23505";

/// Ordinals per transaction: positions are `(xid << ORDINAL_BITS) | ordinal`.
const ORDINAL_BITS: u32 = 20;

/// Attempts for an append that lost a race it may retry (`Any`, a deadlock).
const MAX_ATTEMPTS: u32 = 100;
/// Longest pause between two attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(40);
/// At most one NOTIFY per this interval: under load the notifier sends one per burst, so
/// other processes hear of commits within about this delay at a bounded cost.
const MIN_NOTIFY_INTERVAL: Duration = Duration::from_millis(10);
/// Connections idle this long are pinged before use.
const IDLE_PING_AFTER: Duration = Duration::from_secs(30);
/// Longest pause between attempts to re-establish the listener.
const MAX_LISTENER_BACKOFF: Duration = Duration::from_secs(5);

/// One stream's append, in one statement (see the migration for the position scheme).
///
/// $1 stream_id, $2 category, $3 expected version (-1 = any), $4..$8 the event's columns
/// (arrays of them for several events), $9 the ordinal before this stream's first event:
/// the ordinals this transaction used before, plus the events of earlier streams in the
/// request (so positions follow the request order).
///
/// The expectation costs at most one index probe, and the unique key
/// `events_stream_version_key` arbitrates races (optimistic concurrency enforced by the
/// constraint, not by a read-then-write):
/// * `NoStream` / `Exact(0)` write version 1.. with no read at all: versions have no gaps,
///   so the stream is empty exactly when version 1 is free, and the constraint says so.
/// * `Exact(n)` writes n+1.. if version n exists; if n+1 exists too, the constraint says so.
/// * `Any` reads max(version) and writes after it; a racing writer makes it retry.
///
/// Each kind is its own statement, with no branch on a parameter: Postgres then settles on
/// a generic plan for the prepared statement. (One statement with `case $3 ...` branches
/// was re-planned on every call, because each custom plan folded the branches away and
/// looked cheaper than the generic one: a third of the cost of a single-event append.)
///
/// Returns `(position, version)` per event; no row when `Exact(n)` found no version n.
macro_rules! append_sql {
    (one, $start:literal, $check:literal) => {
        concat!(
            "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
             select (pg_current_xact_id()::text::bigint << 20) + $9::bigint + 1, $4, $1, $2, ",
            $start,
            " + 1, $5, $6, $7, $8 ",
            $check,
            " returning position, version"
        )
    };
    (many, $start:literal, $check:literal) => {
        concat!(
            "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
             select (pg_current_xact_id()::text::bigint << 20) + $9::bigint + e.ordinal,
                    e.event_id, $1, $2, s.version + e.ordinal, e.event_type, e.schema_version, e.data, e.metadata
               from (select ",
            $start,
            " as version) s,
                    unnest($4::uuid[], $5::text[], $6::int4[], $7::jsonb[], $8::jsonb[])
                        with ordinality as e(event_id, event_type, schema_version, data, metadata, ordinal) ",
            $check,
            " returning position, version"
        )
    };
}

/// Statements by (one event?, expectation kind): [fresh, exact, any].
const APPEND_SQL: [[&str; 3]; 2] = [
    [
        append_sql!(many, "$3::bigint", ""),
        append_sql!(
            many,
            "$3::bigint",
            "where exists (select 1 from events where stream_id = $1 and version = $3::bigint)"
        ),
        append_sql!(
            many,
            "(select coalesce(max(version), 0) from events where stream_id = $1)",
            "where $3::bigint < 0"
        ),
    ],
    [
        append_sql!(one, "$3::bigint", ""),
        append_sql!(
            one,
            "$3::bigint",
            "where exists (select 1 from events where stream_id = $1 and version = $3::bigint)"
        ),
        append_sql!(
            one,
            "(select coalesce(max(version), 0) from events where stream_id = $1)",
            "where $3::bigint < 0"
        ),
    ],
];

/// Ordinals this transaction has used (appends earlier in the caller's transaction).
const USED_ORDINALS_SQL: &str = "select coalesce(max(position) - (pg_current_xact_id()::text::bigint << 20), 0) from events
  where position > pg_current_xact_id()::text::bigint << 20 and position < (pg_current_xact_id()::text::bigint + 1) << 20";

/// Columns in the order `decode_event_at` reads them.
const READ_STREAM_SQL: &str = "select position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at
  from events where stream_id = $1 and version >= $2 order by version limit $3";

/// The feed below the horizon of this statement's own snapshot (see the migration), with
/// that horizon in every row (one row of nulls when the page is empty), so the reader knows
/// how far the page is complete.
const READ_ALL_SQL: &str =
    "select h.horizon, e.position, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
  from (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 as horizon) h
  left join lateral (
        select * from events
         where position > $1 and position < h.horizon
         order by position
         limit $2) e on true
 order by e.position";

/// The same, filtered by category. Each category is read on its own, in position order
/// along `events_category_position_idx`, at most a page each, and the pages are merged:
/// `category = any($3) order by position limit $2` made the planner fetch every matching
/// event after `$1` and sort them for each page, so a rebuild from position 0 got slower
/// with every page (130 ms per page of 5,000 over 200,000 cart events, 12 ms this way).
const READ_ALL_CATEGORIES_SQL: &str =
    "select h.horizon, e.position, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
  from (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 as horizon) h
  left join lateral (
        select f.* from (select distinct unnest($3::text[])) as c(category)
         cross join lateral (
               select * from events
                where category = c.category and position > $1 and position < h.horizon
                order by position
                limit $2) f
         order by f.position
         limit $2) e on true
 order by e.position";

const HEAD_SQL: &str = "select h.horizon, coalesce((select max(position) from events where position < h.horizon), 0)
  from (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 as horizon) h";

/// How the store's pool is sized.
#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    /// Connections for appends and reads. The listener and the notifier have one each of
    /// their own on top of these.
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long an append or read waits for a free connection.
    pub acquire_timeout: Duration,
    /// How long opening the store waits for its first connection before it says why it
    /// could not connect.
    pub connect_timeout: Duration,
    /// How long `read_all` and `head_position` wait for the newest commit this store knows
    /// of (its own, or another process's announced by NOTIFY) to come below the feed
    /// horizon. Any transaction in the cluster that is older than that commit holds it back
    /// (usually for milliseconds); waiting gives read-your-writes on the feed instead of a
    /// page that is correct but stops short. After the wait the page is returned as it is:
    /// still correct, the rest comes with a later read.
    pub feed_wait: Duration,
}

/// How the store's pool is built (`store-bench` builds its raw-SQL baseline's pool with it too).
///
/// sqlx pings every connection it takes from the idle queue by default: a second round trip
/// per append. The store pings only connections idle for `IDLE_PING_AFTER`, which catches
/// the connections a restarted server or a firewall dropped; a connection that dies in use
/// fails that one call with an I/O error, which `StoreError::is_transient` marks retryable.
pub fn pool_options(options: &PgStoreOptions) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .min_connections(options.min_connections)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_PING_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            feed_wait: Duration::from_secs(1),
        }
    }
}

/// The Postgres event store. Cheap to clone; the background tasks stop when the last clone
/// is dropped.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    doorbell: watch::Sender<u64>,
    /// Wakes the notifier; a permit stored while it is busy coalesces a burst into one NOTIFY.
    notifier: Arc<Notify>,
    /// The newest position this store knows was committed: by itself, or by another
    /// process that said so in its NOTIFY.
    known: Arc<Known>,
    feed_wait: Duration,
    tasks: Vec<JoinHandle<()>>,
}

/// Newest committed positions: `own` are this store's commits (what its NOTIFY announces),
/// `any` includes other processes' (what its feed readers wait for).
#[derive(Default)]
struct Known {
    own: AtomicU64,
    any: AtomicU64,
}

impl Known {
    fn committed_here(&self, position: Position) {
        self.own.fetch_max(position.0, Ordering::Relaxed);
        self.any.fetch_max(position.0, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects with default options and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PgStoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: PgStoreOptions) -> Result<Self, StoreError> {
        let connect_options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
        crate::startup::check_postgres(&connect_options, options.connect_timeout).await?;
        let pool = pool_options(&options).connect_with(connect_options).await?;
        Self::from_pool_with(pool, options.feed_wait).await
    }

    /// A store over an existing pool (projections share it). Applies the migrations, starts
    /// listening for other processes' commits, and starts the notifier.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::from_pool_with(pool, PgStoreOptions::default().feed_wait).await
    }

    async fn from_pool_with(pool: PgPool, feed_wait: Duration) -> Result<Self, StoreError> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| crate::startup::migration_failed(pool.connect_options().as_ref(), e))?;
        check_xid_counter(&pool).await?;

        let (doorbell, _) = watch::channel(0u64);
        let notifier = Arc::new(Notify::new());
        let known = Arc::new(Known::default());
        // Our own notifications carry this id, so our listener does not ring twice for them.
        let instance = Uuid::new_v4().simple().to_string();
        let base_options = (*pool.connect_options()).clone();

        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(base_options.clone().application_name(LISTENER_APPLICATION_NAME));
        // Listening before we return means a commit made after `connect` is always heard.
        let listener = start_listener(&listener_pool).await?;
        // A NOTIFY is a transaction with a commit record of its own; nothing is lost if a
        // crash forgets it, so it does not wait for the WAL flush (and does not queue
        // behind the appends' flushes, or make them queue behind it).
        let notifier_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(
                base_options
                    .application_name(NOTIFIER_APPLICATION_NAME)
                    .options([("synchronous_commit", "off")]),
            );

        let tasks = vec![
            tokio::spawn(listen(listener_pool, listener, doorbell.clone(), known.clone(), instance.clone())),
            tokio::spawn(notify(notifier_pool, notifier.clone(), known.clone(), instance)),
        ];
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                doorbell,
                notifier,
                known,
                feed_wait,
                tasks,
            }),
        })
    }

    /// The store's pool, for read models that live in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Appends inside the caller's transaction (READ COMMITTED), e.g. together with a
    /// projection's checkpoint. Runs in a savepoint, so a `Conflict` leaves the caller's
    /// transaction usable. The events become readable when the caller commits; call
    /// [`PgStore::notify_committed`] with the outcome's last position after that commit to
    /// wake subscribers at once.
    #[tracing::instrument(name = "store.append_in_transaction", skip_all, fields(
        backend = "postgres",
        streams = request.streams.len(),
        events = request.event_count(),
        stream = request.streams.first().map_or("", |s| s.stream_id.as_str()),
    ))]
    pub async fn append_in_transaction(&self, tx: &mut Transaction<'_, Postgres>, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let mut attempt = 0;
        let mut pauses = retry_pauses();
        loop {
            attempt += 1;
            let mut savepoint = Acquire::begin(&mut *tx).await?;
            let used: i64 = sqlx::query_scalar(USED_ORDINALS_SQL).fetch_one(&mut *savepoint).await?;
            let result = write_request(&mut savepoint, &request, used).await;
            let failure = match result {
                Ok(Written::Appended(outcome)) => {
                    savepoint.commit().await?;
                    return Ok(outcome);
                }
                Ok(Written::Replayed(outcome)) => {
                    savepoint.rollback().await?;
                    return Ok(outcome);
                }
                Err(failure) => {
                    savepoint.rollback().await?;
                    failure
                }
            };
            // Retrying a deadlock inside the caller's transaction would meet the same locks
            // again: the caller retries the whole transaction.
            if let Some(error) = settle(&mut **tx, failure, attempt, false).await? {
                return Err(error);
            }
            tokio::time::sleep(pauses.next().unwrap_or(MAX_RETRY_PAUSE)).await;
        }
    }

    /// Tells subscribers, here and in other processes, that events up to `last_position`
    /// were committed outside [`EventStore::append`] (after the transaction of
    /// [`PgStore::append_in_transaction`] commits).
    pub fn notify_committed(&self, last_position: Position) {
        self.inner.known.committed_here(last_position);
        ring(&self.inner.doorbell);
        self.inner.notifier.notify_one();
    }

    /// Starts waiting for the newest commit this store knows of to reach the feed.
    fn feed_wait(&self) -> FeedWait {
        FeedWait {
            target: to_i64(self.inner.known.any.load(Ordering::Relaxed)),
            deadline: tokio::time::Instant::now() + self.inner.feed_wait,
            pause: Duration::from_millis(1),
        }
    }

    /// One page of the feed below the horizon, and that horizon.
    async fn read_page(&self, after: i64, limit: usize, categories: Option<&[String]>) -> Result<(i64, Vec<RecordedEvent>), StoreError> {
        let query = match categories {
            None => sqlx::query(READ_ALL_SQL).bind(after).bind(to_i64(limit as u64)),
            Some(categories) => sqlx::query(READ_ALL_CATEGORIES_SQL)
                .bind(after)
                .bind(to_i64(limit as u64))
                .bind(categories),
        };
        let rows = query.fetch_all(&self.inner.pool).await?;
        let horizon: i64 = rows.first().map(|row| row.try_get(0)).transpose()?.unwrap_or_default();
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(event) = decode_feed_row(row)? {
                events.push(event);
            }
        }
        Ok((horizon, events))
    }

    /// One stream, no idempotency key: one statement, one round trip.
    async fn append_one_statement(&self, stream: &StreamAppend) -> Result<AppendOutcome, StoreError> {
        let mut attempt = 0;
        let mut pauses = retry_pauses();
        loop {
            attempt += 1;
            // The statement is alone in its implicit transaction: no ordinal is taken yet.
            let failure = match write_stream(&self.inner.pool, stream, 0).await {
                Ok(written) => {
                    return Ok(AppendOutcome {
                        streams: vec![written.outcome(&stream.stream_id)],
                        positions: written.positions,
                        replayed: false,
                    });
                }
                Err(failure) => failure,
            };
            if let Some(error) = settle(&self.inner.pool, failure, attempt, true).await? {
                return Err(error);
            }
            tokio::time::sleep(pauses.next().unwrap_or(MAX_RETRY_PAUSE)).await;
        }
    }

    /// Several streams or an idempotency key: one explicit transaction.
    async fn append_transaction(&self, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        let mut attempt = 0;
        let mut pauses = retry_pauses();
        loop {
            attempt += 1;
            let mut tx = self.inner.pool.begin().await?;
            // A transaction of our own: no ordinal is taken yet.
            let failure = match write_request(&mut tx, request, 0).await {
                Ok(Written::Appended(outcome)) => {
                    tx.commit().await?;
                    return Ok(outcome);
                }
                Ok(Written::Replayed(outcome)) => {
                    tx.rollback().await?;
                    return Ok(outcome);
                }
                Err(failure) => {
                    tx.rollback().await?;
                    failure
                }
            };
            if let Some(error) = settle(&self.inner.pool, failure, attempt, true).await? {
                return Err(error);
            }
            tokio::time::sleep(pauses.next().unwrap_or(MAX_RETRY_PAUSE)).await;
        }
    }
}

/// After a failed attempt whose transaction (or savepoint) is rolled back: `None` to try
/// again, or the error to report.
async fn settle<'e, E: PgExecutor<'e>>(executor: E, failure: Failure, attempt: u32, retry_deadlocks: bool) -> Result<Option<StoreError>, StoreError> {
    match failure {
        Failure::Stale { stream, expected } => {
            // A unique check waits for the transaction holding the key, so a winner has
            // committed and this read sees the version that beat us.
            let actual = stream_version(executor, &stream).await?;
            let retry = expected == ExpectedVersion::Any || expectation_met(expected, actual);
            Ok((!retry || attempt >= MAX_ATTEMPTS).then_some(StoreError::Conflict { stream, expected, actual }))
        }
        Failure::Retry(e) => Ok((!retry_deadlocks || attempt >= MAX_ATTEMPTS).then_some(StoreError::Database(e))),
        Failure::Store(e) => Ok(Some(e)),
    }
}

#[async_trait]
impl EventStore for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(name = "store.append", skip_all, fields(
        backend = "postgres",
        streams = request.streams.len(),
        events = request.event_count(),
        stream = request.streams.first().map_or("", |s| s.stream_id.as_str()),
    ))]
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let outcome = match request.streams.as_slice() {
            [stream] if request.idempotency.is_none() => self.append_one_statement(stream).await?,
            _ => self.append_transaction(&request).await?,
        };
        if !outcome.replayed {
            self.notify_committed(outcome.last_position());
        }
        Ok(outcome)
    }

    async fn read_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(READ_STREAM_SQL)
            .bind(stream_id)
            .bind(to_i64(from_version))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(decode_event).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        stream_version(&self.inner.pool, stream_id).await
    }

    async fn read_all(&self, after: Position, limit: usize, categories: Option<&[String]>) -> Result<Vec<RecordedEvent>, StoreError> {
        check_feed_categories(categories)?;
        let after = to_i64(after.0);
        let mut wait = self.feed_wait();
        loop {
            let (horizon, events) = self.read_page(after, limit, categories).await?;
            if events.len() >= limit || !wait.again(horizon, after).await {
                return Ok(events);
            }
        }
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        let mut wait = self.feed_wait();
        loop {
            let (horizon, head): (i64, i64) = sqlx::query_as(HEAD_SQL).fetch_one(&self.inner.pool).await?;
            if !wait.again(horizon, 0).await {
                return Ok(Position(to_u64(head, "position")?));
            }
        }
    }

    async fn idempotent_outcome(&self, actor: &str, key: &str) -> Result<Option<(String, AppendOutcome)>, StoreError> {
        stored_outcome(&self.inner.pool, actor, key).await
    }

    async fn load_snapshot(&self, stream_id: &str, state_schema_version: i32) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, serde_json::Value)> =
            sqlx::query_as("select version, state from snapshots where stream_id = $1 and state_schema_version = $2")
                .bind(stream_id)
                .bind(state_schema_version)
                .fetch_optional(&self.inner.pool)
                .await?;
        row.map(|(version, state)| {
            Ok(Snapshot {
                stream_id: stream_id.to_owned(),
                state_schema_version,
                version: to_u64(version, "snapshot version")?,
                state,
            })
        })
        .transpose()
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        // The `where` keeps a slow writer of an older state from replacing a newer one.
        sqlx::query(
            "insert into snapshots (stream_id, state_schema_version, version, state)
             values ($1, $2, $3, $4)
             on conflict (stream_id, state_schema_version) do update
                set version = excluded.version, state = excluded.state, saved_at = now()
              where snapshots.version <= excluded.version",
        )
        .bind(&snapshot.stream_id)
        .bind(snapshot.state_schema_version)
        .bind(to_i64(snapshot.version))
        .bind(&snapshot.state)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    fn doorbell(&self) -> watch::Receiver<u64> {
        self.inner.doorbell.subscribe()
    }
}

/// Read-your-writes on the feed: a reader whose page is not full waits (up to `feed_wait`)
/// until the horizon passes `target`, the newest commit known when the read began.
struct FeedWait {
    target: i64,
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl FeedWait {
    /// After a read below `horizon` that was not a full page: pauses and says true when
    /// reading again may return more.
    async fn again(&mut self, horizon: i64, after: i64) -> bool {
        if horizon > self.target || after >= self.target || tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(20));
        true
    }
}

/// What one call of `write_request` did; the caller commits or rolls back.
enum Written {
    Appended(AppendOutcome),
    /// The idempotency key was used before with the same request: nothing was written.
    Replayed(AppendOutcome),
}

/// Why an attempt failed. The transaction (or savepoint) must be rolled back.
enum Failure {
    /// The stream was not as expected when we wrote: an `Exact(n)` found no version n, or
    /// another append holds a version we meant to write (unique violation of
    /// `events_stream_version_key`). After re-reading the stream: a conflict, or (for `Any`,
    /// or when a racing writer has since made the expectation true) a reason to try again.
    Stale {
        stream: String,
        expected: ExpectedVersion,
    },
    /// A deadlock or serialisation failure: worth trying the whole transaction again.
    Retry(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Store(StoreError::Database(e))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

struct StreamWritten {
    /// The stream's version before the append.
    actual: u64,
    positions: Vec<Position>,
}

impl StreamWritten {
    fn outcome(&self, stream_id: &str) -> StreamOutcome {
        StreamOutcome {
            stream_id: stream_id.to_owned(),
            first_version: self.actual + 1,
            last_version: self.actual + self.positions.len() as u64,
        }
    }
}

/// The whole request inside an open transaction or savepoint in which `used` ordinals were
/// taken by earlier appends.
async fn write_request(conn: &mut PgConnection, request: &AppendRequest, used: i64) -> Result<Written, Failure> {
    if let Some(key) = &request.idempotency {
        // Inserted first: a concurrent duplicate blocks here until we commit or roll back,
        // then finds our row (and outcome) instead of appending a second time.
        let claimed = sqlx::query("insert into idempotency_keys (actor, key, fingerprint) values ($1, $2, $3) on conflict do nothing")
            .bind(&key.actor)
            .bind(&key.key)
            .bind(&key.fingerprint)
            .execute(&mut *conn)
            .await
            .map_err(classify)?
            .rows_affected()
            == 1;
        if !claimed {
            let Some((fingerprint, mut outcome)) = stored_outcome(&mut *conn, &key.actor, &key.key).await? else {
                // Only a row that is never deleted made the insert do nothing; try again.
                return Err(Failure::Retry(sqlx::Error::RowNotFound));
            };
            if fingerprint != key.fingerprint {
                return Err(StoreError::IdempotencyKeyReused {
                    actor: key.actor.clone(),
                    key: key.key.clone(),
                }
                .into());
            }
            outcome.replayed = true;
            return Ok(Written::Replayed(outcome));
        }
    }

    // Positions follow the request order (each stream's events start at its offset), but
    // streams are written in stream-id order: two multi-stream appends that share streams
    // then wait on each other's version keys in one order, and the loser gets a prompt
    // conflict instead of a deadlock found only after deadlock_timeout.
    let streams = &request.streams;
    let mut offsets = Vec::with_capacity(streams.len());
    let mut offset = used;
    for stream in streams {
        offsets.push(offset);
        offset += stream.events.len() as i64;
    }
    if offset >= 1 << ORDINAL_BITS {
        return Err(transaction_full().into());
    }
    let mut order: Vec<usize> = (0..streams.len()).collect();
    order.sort_by(|&a, &b| streams[a].stream_id.cmp(&streams[b].stream_id));

    let mut written: Vec<Option<StreamWritten>> = streams.iter().map(|_| None).collect();
    for i in order {
        written[i] = Some(write_stream(&mut *conn, &streams[i], offsets[i]).await?);
    }

    let mut outcome = AppendOutcome {
        streams: Vec::with_capacity(streams.len()),
        positions: Vec::with_capacity(request.event_count()),
        replayed: false,
    };
    for (stream, w) in streams.iter().zip(written) {
        let w = w.ok_or_else(|| StoreError::Corrupt(format!("stream {} was not written", stream.stream_id)))?;
        outcome.streams.push(w.outcome(&stream.stream_id));
        outcome.positions.extend(w.positions);
    }

    if let Some(key) = &request.idempotency {
        sqlx::query("update idempotency_keys set outcome = $3 where actor = $1 and key = $2")
            .bind(&key.actor)
            .bind(&key.key)
            .bind(Json(&outcome))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
    }
    Ok(Written::Appended(outcome))
}

/// One stream in one statement (`APPEND_SQL`), its first event at ordinal `before + 1`.
async fn write_stream<'e, E: PgExecutor<'e>>(executor: E, stream: &StreamAppend, before: i64) -> Result<StreamWritten, Failure> {
    let kind = match stream.expected {
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => 0,
        ExpectedVersion::Exact(_) => 1,
        ExpectedVersion::Any => 2,
    };
    let query = match stream.events.as_slice() {
        [event] => sqlx::query(APPEND_SQL[1][kind])
            .bind(&stream.stream_id)
            .bind(category_of(&stream.stream_id))
            .bind(expected_param(stream.expected))
            .bind(event.event_id)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.data)
            .bind(Json(&event.metadata)),
        events => sqlx::query(APPEND_SQL[0][kind])
            .bind(&stream.stream_id)
            .bind(category_of(&stream.stream_id))
            .bind(expected_param(stream.expected))
            .bind(events.iter().map(|e| e.event_id).collect::<Vec<Uuid>>())
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<&str>>())
            .bind(events.iter().map(|e| e.schema_version).collect::<Vec<i32>>())
            .bind(events.iter().map(|e| &e.data).collect::<Vec<&serde_json::Value>>())
            .bind(events.iter().map(|e| Json(&e.metadata)).collect::<Vec<Json<&Metadata>>>()),
    };
    let stale = || Failure::Stale {
        stream: stream.stream_id.clone(),
        expected: stream.expected,
    };
    let rows = query.bind(before).fetch_all(executor).await.map_err(|e| match classify(e) {
        Failure::Store(StoreError::Database(sqlx::Error::Database(db))) if is_unique_violation(db.as_ref(), STREAM_VERSION_KEY) => stale(),
        other => other,
    })?;
    if rows.is_empty() {
        return Err(stale());
    }
    if rows.len() != stream.events.len() {
        return Err(StoreError::Corrupt(format!("appended {} rows for {} events", rows.len(), stream.events.len())).into());
    }
    let mut appended = rows
        .iter()
        .map(|row| Ok((to_u64(row.try_get(0)?, "position")?, to_u64(row.try_get(1)?, "version")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    appended.sort_unstable();
    Ok(StreamWritten {
        actual: appended[0].1 - 1,
        positions: appended.into_iter().map(|(position, _)| Position(position)).collect(),
    })
}

/// Sorts a database error into what the append loop does with it. Never reads message text.
fn classify(e: sqlx::Error) -> Failure {
    if let sqlx::Error::Database(db) = &e {
        if is_unique_violation(db.as_ref(), EVENT_ID_KEY) {
            return Failure::Store(StoreError::InvalidRequest("an event id in this append is already stored".into()));
        }
        // deadlock_detected, serialization_failure
        if matches!(db.code().as_deref(), Some("40P01") | Some("40001")) {
            return Failure::Retry(e);
        }
    }
    Failure::Store(StoreError::Database(e))
}

/// A unique violation of the named constraint, told by SQLSTATE and constraint name.
pub fn is_unique_violation(db: &dyn sqlx::error::DatabaseError, constraint: &str) -> bool {
    db.code().as_deref() == Some(UNIQUE_VIOLATION) && db.constraint() == Some(constraint)
}

async fn stream_version<'e, E: PgExecutor<'e>>(executor: E, stream_id: &str) -> Result<u64, StoreError> {
    let version: i64 = sqlx::query_scalar("select coalesce(max(version), 0) from events where stream_id = $1")
        .bind(stream_id)
        .fetch_one(executor)
        .await?;
    to_u64(version, "stream version")
}

/// A row of `EVENT_COLUMNS`.
fn decode_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    decode_event_at(row, 0)
}

/// A row of a feed query: the horizon, then `EVENT_COLUMNS`, all null for an empty page.
fn decode_feed_row(row: &PgRow) -> Result<Option<RecordedEvent>, StoreError> {
    if row.try_get::<Option<i64>, _>(1)?.is_none() {
        return Ok(None);
    }
    decode_event_at(row, 1).map(Some)
}

/// `EVENT_COLUMNS` starting at column `at`, upcast to the current schema.
fn decode_event_at(row: &PgRow, at: usize) -> Result<RecordedEvent, StoreError> {
    let position = Position(to_u64(row.try_get(at)?, "position")?);
    let event_type: String = row.try_get(at + 4)?;
    let stored_schema: i32 = row.try_get(at + 5)?;
    let data: serde_json::Value = row.try_get(at + 6)?;
    let metadata: Json<&serde_json::value::RawValue> = row.try_get(at + 7)?;
    let metadata: Metadata =
        serde_json::from_str(metadata.0.get()).map_err(|e| StoreError::Corrupt(format!("metadata of event at position {position}: {e}")))?;
    let (schema_version, data) = upcast(&event_type, stored_schema, data)?;
    Ok(RecordedEvent {
        position,
        stream_id: row.try_get(at + 1)?,
        version: to_u64(row.try_get(at + 2)?, "version")?,
        event_id: row.try_get(at + 3)?,
        event_type,
        schema_version,
        data,
        metadata,
        recorded_at: row.try_get(at + 8)?,
    })
}

/// The fingerprint and outcome stored for (actor, key), if any.
async fn stored_outcome<'e, E: PgExecutor<'e>>(executor: E, actor: &str, key: &str) -> Result<Option<(String, AppendOutcome)>, StoreError> {
    let row: Option<(String, Option<Json<AppendOutcome>>)> =
        sqlx::query_as("select fingerprint, outcome from idempotency_keys where actor = $1 and key = $2")
            .bind(actor)
            .bind(key)
            .fetch_optional(executor)
            .await?;
    row.map(|(fingerprint, outcome)| {
        // Null only inside the transaction that claimed the key, which others cannot see.
        let outcome = outcome.ok_or_else(|| StoreError::Corrupt(format!("idempotency key {key:?} of {actor:?} has no stored outcome")))?;
        Ok((fingerprint, outcome.0))
    })
    .transpose()
}

/// Checks the shape rules both backends share.
fn expected_param(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::NoStream => 0,
        // A version past i64::MAX cannot exist, so it can never match.
        ExpectedVersion::Exact(v) => i64::try_from(v).unwrap_or(i64::MAX),
    }
}

fn expectation_met(expected: ExpectedVersion, actual: u64) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual == 0,
        ExpectedVersion::Exact(v) => actual == v,
    }
}

fn transaction_full() -> StoreError {
    StoreError::InvalidRequest(format!("one transaction may append at most {} events", (1u64 << ORDINAL_BITS) - 1))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

/// Short, growing, jittered pauses between attempts so racing writers spread out
/// (backon's schedule: 1 ms doubling to `MAX_RETRY_PAUSE`, each with random jitter).
fn retry_pauses() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(MAX_RETRY_PAUSE)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Refuses a database whose xid counter is behind its stored positions (a logical dump
/// restored into a new cluster): new positions would land behind the ones readers passed.
async fn check_xid_counter(pool: &PgPool) -> Result<(), StoreError> {
    let (newest_xid, next_xid): (i64, i64) = sqlx::query_as(&format!(
        "select coalesce(max(position), 0) >> {ORDINAL_BITS}, pg_snapshot_xmax(pg_current_snapshot())::text::bigint from events"
    ))
    .fetch_one(pool)
    .await?;
    if newest_xid >= next_xid {
        return Err(StoreError::Corrupt(format!(
            "stored events were written by transaction {newest_xid} but this server's next transaction id is {next_xid}: \
             the database was restored into another cluster without its transaction counter; advance it (pg_resetwal -x) \
             past {newest_xid} before writing, or new events would be positioned behind old ones"
        )));
    }
    Ok(())
}

async fn start_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

fn ring(doorbell: &watch::Sender<u64>) {
    doorbell.send_modify(|n| *n = n.wrapping_add(1));
}

/// Rings the doorbell for every other process's NOTIFY and after every reconnect (the
/// notifications sent while we were away are lost; readers re-read from their checkpoints).
/// A payload is `<instance>:<newest position>`; anything else still rings.
async fn listen(pool: PgPool, mut listener: PgListener, doorbell: watch::Sender<u64>, known: Arc<Known>, instance: String) {
    let mut pause = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let (sender, position) = notification.payload().split_once(':').unwrap_or(("", ""));
                if sender != instance {
                    if let Ok(position) = position.parse::<u64>() {
                        known.any.fetch_max(position, Ordering::Relaxed);
                    }
                    ring(&doorbell);
                }
            }
            // The connection was lost and (eager reconnect) is listening again.
            Ok(None) => {
                tracing::info!("event listener reconnected");
                ring(&doorbell);
            }
            Err(e) => {
                tracing::warn!(error = %e, "event listener failed; reconnecting");
                ring(&doorbell);
                loop {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_LISTENER_BACKOFF);
                    match start_listener(&pool).await {
                        Ok(fresh) => {
                            listener = fresh;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "event listener cannot reconnect yet"),
                    }
                }
                pause = Duration::from_millis(100);
                ring(&doorbell);
            }
        }
    }
}

/// Sends one NOTIFY per burst of local commits, at most one per `MIN_NOTIFY_INTERVAL`,
/// naming the newest position this store committed.
async fn notify(pool: PgPool, wake: Arc<Notify>, known: Arc<Known>, instance: String) {
    loop {
        wake.notified().await;
        let sent = tokio::time::Instant::now();
        let payload = format!("{instance}:{}", known.own.load(Ordering::Relaxed));
        if let Err(e) = sqlx::query("select pg_notify($1, $2)").bind(CHANNEL).bind(&payload).execute(&pool).await {
            // Other processes still poll; they hear of this commit a little later.
            tracing::warn!(error = %e, "could not send the commit notification");
        }
        tokio::time::sleep_until(sent + MIN_NOTIFY_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_map_to_the_statement_parameter() {
        assert_eq!(expected_param(ExpectedVersion::Any), -1);
        assert_eq!(expected_param(ExpectedVersion::NoStream), 0);
        assert_eq!(expected_param(ExpectedVersion::Exact(7)), 7);
        assert_eq!(expected_param(ExpectedVersion::Exact(u64::MAX)), i64::MAX);
        assert!(expectation_met(ExpectedVersion::Exact(0), 0) && expectation_met(ExpectedVersion::NoStream, 0));
        assert!(!expectation_met(ExpectedVersion::NoStream, 1));
    }
}

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
//!   `pg_notify` per burst of local commits while another process listens (never inside
//!   the append's transaction: NOTIFY takes a cluster-wide lock at commit and would
//!   serialise every append); a listener task on its own connection (application_name
//!   `cartsource-listener`) rings on every notification from other processes and whenever
//!   its connection was lost. Subscriptions poll as well, so a lost notification only
//!   delays.
//!
//! Files: `append` (the statements and the retry loop), `feed` (reads below the horizon),
//! `group_commit` (appends that share a statement), `connections` (the store's own
//! connections beside the pool), `wakeups` (doorbell, notifier, listener), `checks` (what
//! opening the store refuses), `replica` (the optional read replica's pool), `archive`,
//! `keys`.

mod append;
mod archive;
mod checks;
mod connections;
mod feed;
mod group_commit;
mod keys;
mod replica;
mod wakeups;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::event::{
    AppendOutcome, AppendRequest, ArchiveOutcome, ArchiveReason, ArchivedStream, ExpectedVersion, Position, RecordedEvent, Snapshot, StreamEvent,
};
use crate::event_store::EventStore;

pub use append::{is_unique_violation, NEW_STREAM_APPEND_SQL};
pub use replica::open_read_replica;
pub use wakeups::{CHANNEL, LISTENER_APPLICATION_NAME, NOTIFIER_APPLICATION_NAME};

/// Every statement on the store's connections is planned once, for any parameters.
///
/// Postgres plans a prepared statement's first five runs for their actual parameters; for a
/// stream of 1,000 events that plan was a bitmap scan and a sort, taking twice as long as the
/// generic plan's ordered index scan (2.2 ms against 1.0 ms, `explain analyze`), and costs
/// about a millisecond of planning each time. With a pool, every connection pays those five
/// runs. The store's statements (and the read models' beside them) are lookups by key or
/// by position that want the same plan whatever the parameters.
pub(crate) const GENERIC_PLANS: (&str, &str) = ("plan_cache_mode", "force_generic_plan");

/// Ordinals per transaction: positions are `(xid << ORDINAL_BITS) | ordinal`.
const ORDINAL_BITS: u32 = 20;

/// Connections idle this long are pinged before use.
pub(super) const IDLE_PING_AFTER: Duration = Duration::from_secs(30);

/// How the store's pool is sized.
#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    /// The pool's connections: transactions (multi-stream and idempotent appends, archiving),
    /// the rarer reads, and feed and stream reads and lone appends while the store's two
    /// spare connections are in use (`connections.rs`). Beside the pool: those two, group
    /// commit's up to `group_commit_writers`, and the listener's and the notifier's.
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
    /// The server ends a session of this pool that sits idle inside a transaction for longer
    /// (`idle_in_transaction_session_timeout`; `None`: the server's setting). An open
    /// transaction holds back the feed horizon of every reader in the cluster and keeps its
    /// row locks: a process frozen in the middle of one (SIGSTOP, a stalled host) would stall
    /// every node's feed and a standby's takeover for as long as it is frozen.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Group commit (`group_commit`): at most this many statements of grouped appends
    /// in flight at once, a lone append's or a group's, each one flush; 0 writes every
    /// append on its own, with no limit but the pool.
    pub group_commit_writers: usize,
}

/// How the store's pool is built.
///
/// sqlx pings every connection it takes from the idle queue by default: a second round trip
/// per append. The store pings only connections idle for `IDLE_PING_AFTER`, which catches
/// the connections a restarted server or a firewall dropped; a connection that dies in use
/// fails that one call with an I/O error, which `StoreError::is_transient` marks retryable.
pub(crate) fn pool_options(options: &PgStoreOptions) -> PgPoolOptions {
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
            idle_in_transaction_timeout: None,
            group_commit_writers: 2,
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
    /// Where one-stream appends and feed and stream reads run (`connections.rs`).
    connections: Arc<connections::Connections>,
    wakeups: wakeups::Wakeups,
    feed_wait: Duration,
    group_commit: Option<group_commit::GroupCommit>,
}

impl PgStore {
    /// Connects with default options and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PgStoreOptions::default()).await
    }

    /// Connects, applies the migrations, starts listening for other processes' commits,
    /// and starts the notifier.
    pub async fn connect_with(url: &str, options: PgStoreOptions) -> Result<Self, StoreError> {
        let connect_options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
        crate::startup::check_postgres(&connect_options, options.connect_timeout, "DATABASE_URL").await?;
        let connect_options = connect_options.options([GENERIC_PLANS]);
        let connect_options = match options.idle_in_transaction_timeout {
            Some(limit) => connect_options.options([("idle_in_transaction_session_timeout", format!("{}ms", limit.as_millis().max(1)))]),
            None => connect_options,
        };
        let pool = pool_options(&options).connect_with(connect_options).await?;
        checks::migrate_and_check(&pool).await?;
        let wakeups = wakeups::Wakeups::start(&pool).await?;
        let connections = Arc::new(connections::Connections::new(&pool, options.connect_timeout));
        Ok(PgStore {
            inner: Arc::new(Inner {
                group_commit: (options.group_commit_writers > 0)
                    .then(|| group_commit::GroupCommit::start(connections.clone(), options.group_commit_writers)),
                connections,
                pool,
                wakeups,
                feed_wait: options.feed_wait,
            }),
        })
    }

    /// The store's pool, for read models that live in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

#[async_trait]
impl EventStore for PgStore {
    #[tracing::instrument(name = "store.append", skip_all, fields(
        backend = "postgres",
        streams = request.streams.len(),
        events = request.event_count(),
        stream = request.streams.first().map_or("", |s| s.stream_id.as_str()),
    ))]
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.append_request(request).await
    }

    async fn read_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_page(stream_id, from_version, limit).await
    }

    async fn load_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<StreamEvent>, StoreError> {
        self.load_stream_page(stream_id, from_version, limit).await
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        append::stream_version(&self.inner.pool, stream_id).await
    }

    async fn read_all(&self, after: Position, limit: usize, categories: Option<&[String]>) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_feed(after, limit, categories).await
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        self.feed_head().await
    }

    async fn idempotent_outcome(&self, actor: &str, key: &str) -> Result<Option<(String, AppendOutcome)>, StoreError> {
        append::stored_outcome(&self.inner.pool, actor, key).await
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

    async fn archive_stream(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        reason: ArchiveReason,
        actor: &str,
    ) -> Result<ArchiveOutcome, StoreError> {
        let outcome = self.archive(stream_id, expected, reason, actor).await?;
        if let Some(position) = outcome.position {
            self.inner.wakeups.committed(position);
        }
        Ok(outcome)
    }

    async fn truncate_stream(&self, stream_id: &str, through: u64) -> Result<u64, StoreError> {
        self.truncate(stream_id, through).await
    }

    async fn archived_stream(&self, stream_id: &str) -> Result<Option<ArchivedStream>, StoreError> {
        archive::tombstone(&self.inner.pool, stream_id).await
    }

    fn doorbell(&self) -> watch::Receiver<u64> {
        self.inner.wakeups.doorbell()
    }
}

/// One connection of the store's own (beside the pool: `connections`, the notifier), opened
/// within `timeout`; a server that does not answer is a timeout, like the pool's.
async fn connect_within(options: &PgConnectOptions, timeout: Duration) -> Result<sqlx::PgConnection, sqlx::Error> {
    match tokio::time::timeout(timeout, sqlx::Connection::connect_with(options)).await {
        Ok(connected) => connected,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}

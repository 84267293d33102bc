//! The embedded backend: one SQLite file, the default when no database is configured.
//!
//! Decisions:
//! * **One writer.** SQLite has one write lock per database; we make that explicit with a
//!   writer pool of exactly one connection whose transactions start with `BEGIN IMMEDIATE`
//!   (the lock is taken at BEGIN, so no transaction ever has to upgrade a read lock to a
//!   write lock: no SQLITE_BUSY from upgrades, no deadlock between two upgraders). Appends
//!   queue on that connection inside the process, not in SQLite's busy loop. Because
//!   writers never overlap, commit order is position order and the global feed is
//!   gap-free by construction (the reasoning sits next to the SQL, in
//!   `migrations/sqlite/0001_event_store.sql`).
//! * **Many readers.** A second pool of several connections (`query_only`) serves reads;
//!   WAL lets them read a committed snapshot while the writer writes.
//! * **Durability.** WAL journal with `synchronous = FULL`: an append is acknowledged only
//!   after its commit is in the WAL on disk, so it survives a crash or a power loss.
//! * **Expectations** are checked under the write lock against the stream's `max(version)`
//!   (in the insert statement itself for the command path's appends, see `append`); the
//!   unique index `events_stream_version_key` stays the arbiter, its violation recognised
//!   by SQLite's extended result code 2067, never by message text.
//! * **Times** are stored as fixed-width RFC 3339 UTC text with microseconds (the precision
//!   of Postgres' timestamptz), so text order is time order. `recorded_at` is taken inside
//!   the write lock and never earlier than the previous event's: it never decreases with
//!   position, which time travel (`recorded_at <= t`) relies on.
//! * **Group commit.** The command path's appends that arrive while another is being written
//!   share one transaction and one sync of the WAL, each with its own expectation and
//!   answer (`group_commit`): with one writer, the sync is what concurrent appends wait for.
//! * **Doorbell.** In-process: rung after each commit that wrote events.
//!
//! Projections share the store's pools ([`SqliteStore::pool`]): they must write (read
//! model, checkpoint) in a transaction on the *writer* pool, ideally from [`SqliteStore::begin`], and never call
//! [`EventStore::append`] while they hold that transaction: the writer pool has one
//! connection, so that call would wait for the connection the caller itself holds (and
//! fail with `PoolTimedOut` after `acquire_timeout`).
//!
//! One file (about 440 lines): the backend and its `EventStore` impl with the SQL each
//! method runs; appending (`append`), group commit (`group_commit`), data keys (`keys`),
//! archiving (`archive`) and row decoding (`rows`) sit beside it.
//!
//! `rows` holds how values are written as text and integers and read back.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::event::{
    check_feed_categories, AppendOutcome, AppendRequest, ArchiveOutcome, ArchiveReason, ArchivedStream, ExpectedVersion, Position, RecordedEvent,
    Snapshot, StreamEvent,
};
use crate::event_store::EventStore;

mod append;
mod archive;
mod group_commit;
mod keys;
mod rows;

use append::{current_version, recorded_at};
use rows::{clamp_i64, decode_rows, format_timestamp, from_i64, into_events, into_stream_events, parse_outcome, to_i64, EventRow, Versioned};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// SQLite's extended result code for a UNIQUE constraint (or unique index) violation.
const SQLITE_CONSTRAINT_UNIQUE: &str = "2067";

/// Tuning for [`SqliteStore::connect_with`]; `Default` is what [`SqliteStore::connect`] uses.
#[derive(Clone, Debug)]
pub struct SqliteStoreOptions {
    /// Connections in the reader pool (the writer pool always has exactly one).
    pub read_connections: u32,
    /// How long a statement waits for a lock held by *another process* before SQLITE_BUSY.
    pub busy_timeout: Duration,
    /// How long a caller waits for a pool connection (writers queue here for their turn).
    pub acquire_timeout: Duration,
}

impl Default for SqliteStoreOptions {
    fn default() -> Self {
        SqliteStoreOptions {
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// The store's two pools. Write (read models and checkpoints too) only through `writer`,
/// in one transaction at a time; `reader` refuses writes (`PRAGMA query_only`).
#[derive(Clone, Debug)]
pub struct SqlitePools {
    /// Exactly one connection: every write transaction in the process takes turns on it.
    pub writer: SqlitePool,
    /// Several read-only connections: WAL lets them read while the writer writes.
    pub reader: SqlitePool,
}

/// The SQLite event store. Cheap to clone: clones share the pools and the doorbell.
#[derive(Clone)]
pub struct SqliteStore {
    pools: SqlitePools,
    /// Rung after commits that wrote events.
    doorbell: Arc<watch::Sender<u64>>,
    /// The writer's turn and the appends waiting to share the next commit.
    group: Arc<group_commit::GroupCommit>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) the database at `url`
    /// (`sqlite:path`, `sqlite://path?mode=rwc`, ...) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, SqliteStoreOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit pool sizes and timeouts.
    pub async fn connect_with(url: &str, options: SqliteStoreOptions) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::InvalidRequest(format!("invalid SQLite URL {url:?}: {e}")))?;
        if is_in_memory(url) {
            // Each pool would see its own or a shared-cache database: no WAL, readers blocked
            // by the writer, nothing durable. The store is a file.
            return Err(StoreError::InvalidRequest(format!(
                "in-memory SQLite ({url:?}) is not supported: use a file, e.g. sqlite:data/cartsource.db"
            )));
        }
        if let Some(dir) = base.get_filename().parent().filter(|dir| !dir.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let base = base
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full);
        // Opened first: it creates the file, switches it to WAL (a lasting property of the
        // file, so the readers find it in WAL) and runs the migrations.
        // Neither pool pings a connection before handing it out: a connection to a file in
        // this process cannot have gone away, and each ping is a round trip to the thread sqlx
        // runs the connection on (an append made three: that ping, its statement, and the
        // ping sqlx 0.8 makes on every release). Single-event appends 13% faster for it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone().create_if_missing(true).read_only(false).journal_mode(SqliteJournalMode::Wal))
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.pragma("query_only", "ON"))
            .await?;
        Ok(SqliteStore {
            pools: SqlitePools { writer, reader },
            doorbell: Arc::new(watch::channel(0).0),
            group: Arc::default(),
        })
    }

    /// The pools the projections share with the store (see the module doc for the rules).
    pub fn pool(&self) -> &SqlitePools {
        &self.pools
    }

    /// A write transaction on the writer connection, holding SQLite's write lock from BEGIN
    /// on. Every write transaction in the process waits here for its turn.
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pools.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes both pools, waiting for connections in use to come back. Appends acknowledged
    /// before are on disk whether or not this is called.
    pub async fn close(&self) {
        self.pools.reader.close().await;
        self.pools.writer.close().await;
    }
}

/// `sqlite::memory:` or `mode=memory`, read as sqlx reads the URL.
/// The database file a `sqlite:` URL names (`None` for another scheme or an in-memory one).
pub fn database_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || is_in_memory(url) {
        return None;
    }
    SqliteConnectOptions::from_str(url).ok().map(|o| o.get_filename().to_path_buf())
}

fn is_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

const READ_STREAM_SQL: &str = "select position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at \
     from events where stream_id = ?1 and version >= ?2 order by version limit ?3";
/// The same over the hot table and the archive, for a stream truncated behind a snapshot.
///
/// Like every read of both tables here, one compound `select` with the `order by` on the
/// whole: SQLite merges the two index scans as they go. Each arm as a subquery with its own
/// `order by ... limit` made it copy both arms into temporary B-trees and sort them again
/// (`explain query plan`), 2.5 times as long for a page of 1,000 (sqlite3, 200,000 events).
const READ_STREAM_WITH_ARCHIVE_SQL: &str = "select position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at \
       from events where stream_id = ?1 and version >= ?2 \
     union all \
     select position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at \
       from archived_events where stream_id = ?1 and version >= ?2 \
     order by version limit ?3";
/// What folding an aggregate reads (`load_stream`): no stream id, event id or metadata.
const LOAD_STREAM_SQL: &str = "select position, version, event_type, schema_version, data, recorded_at \
     from events where stream_id = ?1 and version >= ?2 order by version limit ?3";
const LOAD_STREAM_WITH_ARCHIVE_SQL: &str = "select position, version, event_type, schema_version, data, recorded_at \
       from events where stream_id = ?1 and version >= ?2 \
     union all \
     select position, version, event_type, schema_version, data, recorded_at \
       from archived_events where stream_id = ?1 and version >= ?2 \
     order by version limit ?3";
/// The whole feed, hot table and archive merged (0006): archiving never changes it.
const READ_ALL_SQL: &str = "select position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at \
       from events where position > ?1 \
     union all \
     select position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at \
       from archived_events where position > ?1 \
     order by position limit ?2";

impl SqliteStore {
    /// A page of one stream's rows by version, with the columns `sql` selects (`[hot table,
    /// hot table and archive]`). Like the Postgres edition: a page that does not start at
    /// `from_version` asks `stream_archives` whether the stream was archived (an error) or
    /// truncated (read again with the archive).
    async fn stream_rows<R>(&self, sql: [&'static str; 2], stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<R>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin + Versioned,
    {
        let run = |sql: &'static str| async move {
            let rows = sqlx::query(sql)
                .bind(stream_id)
                .bind(clamp_i64(from_version))
                .bind(clamp_i64(limit as u64))
                .fetch_all(&self.pools.reader)
                .await?;
            decode_rows::<R>(rows)
        };
        let rows: Vec<R> = run(sql[0]).await?;
        if limit == 0 || rows.first().map(R::version) == Some(clamp_i64(from_version.max(1))) {
            return Ok(rows);
        }
        let mut conn = self.pools.reader.acquire().await?;
        match archive::archive_state(&mut conn, stream_id).await? {
            None => Ok(rows),
            Some((true, version)) => Err(StoreError::StreamArchived {
                stream: stream_id.to_owned(),
                version,
            }),
            Some((false, _)) => Ok(run(sql[1]).await?),
        }
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_CONSTRAINT_UNIQUE))
}

/// The feed filtered by `n` categories (bound as `?3`, `?4`, ...), one statement, so one
/// snapshot. Each category is read on its own along `events_category_position_idx` (and the
/// archive's twin), in position order, and SQLite merges the scans as they go (one compound
/// `select`, see `READ_STREAM_WITH_ARCHIVE_SQL`): with `category in (...) order by position`
/// its plan fetched every matching event after `?1` and sorted them (a temp B-tree) for each
/// page, the plan Postgres had too. The text is ours alone: only the number of placeholders
/// varies.
fn categories_feed_sql(n: usize) -> String {
    let arms: Vec<String> = (0..n)
        .flat_map(|i| {
            ["events", "archived_events"].map(|table| {
                format!(
                    "select position, event_id, stream_id, version, event_type, schema_version, data, metadata, recorded_at \
                     from {table} where category = ?{} and position > ?1",
                    i + 3
                )
            })
        })
        .collect();
    format!("{} order by position limit ?2", arms.join(" union all "))
}

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(name = "store.append", skip_all, fields(
        backend = "sqlite",
        streams = request.streams.len(),
        events = request.event_count(),
        stream = request.streams.first().map_or("", |s| s.stream_id.as_str()),
    ))]
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        // No retry loop for `Any`: with one writer at a time the version read by the append
        // is still the stream's version at its commit, so `Any` cannot conflict.
        let outcome = self.append_request(&request).await?;
        if !outcome.replayed {
            self.doorbell.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(outcome)
    }

    async fn read_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        into_events(
            self.stream_rows([READ_STREAM_SQL, READ_STREAM_WITH_ARCHIVE_SQL], stream_id, from_version, limit)
                .await?,
        )
    }

    async fn load_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<StreamEvent>, StoreError> {
        into_stream_events(
            self.stream_rows([LOAD_STREAM_SQL, LOAD_STREAM_WITH_ARCHIVE_SQL], stream_id, from_version, limit)
                .await?,
        )
    }

    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.pools.reader.acquire().await?;
        current_version(&mut conn, stream_id).await
    }

    async fn read_all(&self, after: Position, limit: usize, categories: Option<&[String]>) -> Result<Vec<RecordedEvent>, StoreError> {
        check_feed_categories(categories)?;
        let rows = match categories {
            None => {
                sqlx::query(READ_ALL_SQL)
                    .bind(clamp_i64(after.0))
                    .bind(clamp_i64(limit as u64))
                    .fetch_all(&self.pools.reader)
                    .await?
            }
            Some([]) => Vec::new(),
            Some(categories) => {
                let mut categories: Vec<&str> = categories.iter().map(String::as_str).collect();
                categories.sort_unstable();
                categories.dedup();
                let sql = categories_feed_sql(categories.len());
                let mut query = sqlx::query(&sql).bind(clamp_i64(after.0)).bind(clamp_i64(limit as u64));
                for category in categories {
                    query = query.bind(category);
                }
                query.fetch_all(&self.pools.reader).await?
            }
        };
        into_events(decode_rows::<EventRow>(rows)?)
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        let head: i64 = sqlx::query_scalar(
            "select max(coalesce((select max(position) from events), 0), coalesce((select max(position) from archived_events), 0))",
        )
        .fetch_one(&self.pools.reader)
        .await?;
        Ok(Position(from_i64(head, "position")?))
    }

    async fn idempotent_outcome(&self, actor: &str, key: &str) -> Result<Option<(String, AppendOutcome)>, StoreError> {
        let stored: Option<(String, String)> = sqlx::query_as("select fingerprint, outcome from idempotency_keys where actor = ?1 and key = ?2")
            .bind(actor)
            .bind(key)
            .fetch_optional(&self.pools.reader)
            .await?;
        stored
            .map(|(fingerprint, outcome)| Ok((fingerprint, parse_outcome(&outcome)?)))
            .transpose()
    }

    async fn load_snapshot(&self, stream_id: &str, state_schema_version: i32) -> Result<Option<Snapshot>, StoreError> {
        let stored: Option<(i64, String)> = sqlx::query_as("select version, state from snapshots where stream_id = ?1 and state_schema_version = ?2")
            .bind(stream_id)
            .bind(state_schema_version)
            .fetch_optional(&self.pools.reader)
            .await?;
        let Some((version, state)) = stored else { return Ok(None) };
        let state = serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(format!("snapshot of {stream_id}: {e}")))?;
        Ok(Some(Snapshot {
            stream_id: stream_id.to_owned(),
            state_schema_version,
            version: from_i64(version, "snapshot version")?,
            state,
        }))
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let state = serde_json::to_string(&snapshot.state).map_err(|e| StoreError::InvalidRequest(format!("snapshot state is not JSON: {e}")))?;
        let saved_at = format_timestamp(OffsetDateTime::now_utc())?;
        // One statement, so the writer takes the lock at its first (and only) write.
        sqlx::query(
            "insert into snapshots (stream_id, state_schema_version, version, state, saved_at) values (?1, ?2, ?3, ?4, ?5) \
             on conflict (stream_id, state_schema_version) do update \
             set version = excluded.version, state = excluded.state, saved_at = excluded.saved_at \
             where excluded.version >= snapshots.version",
        )
        .bind(&snapshot.stream_id)
        .bind(snapshot.state_schema_version)
        .bind(to_i64(snapshot.version, "snapshot version")?)
        .bind(state)
        .bind(saved_at)
        .execute(&self.pools.writer)
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
        let mut tx = self.begin().await?;
        let recorded_at = recorded_at(&mut tx).await?;
        let outcome = archive::archive(&mut tx, stream_id, expected, reason, actor, &recorded_at).await?;
        tx.commit().await?;
        if !outcome.already {
            self.doorbell.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(outcome)
    }

    async fn truncate_stream(&self, stream_id: &str, through: u64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let moved = archive::truncate(&mut tx, stream_id, through).await?;
        tx.commit().await?;
        Ok(moved)
    }

    async fn archived_stream(&self, stream_id: &str) -> Result<Option<ArchivedStream>, StoreError> {
        let mut conn = self.pools.reader.acquire().await?;
        archive::tombstone(&mut conn, stream_id).await
    }

    fn doorbell(&self) -> watch::Receiver<u64> {
        self.doorbell.subscribe()
    }
}

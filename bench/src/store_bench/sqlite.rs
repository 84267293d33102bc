//! The SQLite half: `SqliteStore` against a minimal SQLite baseline, each in its own file.
//!
//! The baseline: the six columns in SQLite types, WAL with `synchronous = FULL`
//! (what the store uses: an acknowledged append survives a power loss), rusqlite with cached
//! prepared statements, and, like the store, one writer connection that writers take turns
//! on (SQLite has one write lock; queueing in the process beats SQLite's busy loop) and four
//! readers. W1 is one INSERT in autocommit, W2 one 10-row INSERT, W3 one SELECT by stream, W4
//! pages by position; rows decode `data` straight from its text into the typed event. The
//! live tail is left out: with one writer both sides commit in position order and cannot
//! skip.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use domain::CartEvent;
use rusqlite::{params, Connection, ToSql};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use store::{EventStore, SqliteStore, SqliteStoreOptions};
use uuid::Uuid;

use super::baseline::typed;
use super::measure::{alternate, drive, loads};
use super::pg::{event_data, next_slot, set_slot, slots};
use super::report::{Report, Target};
use super::{item_added, ours, ten, BoxError, StoreArgs};

/// The baseline's client, as the report names it (`Cargo.toml` pins the same).
const RUSQLITE: &str = "0.32";

const TABLE: &str = "create table raw_events (global_position integer primary key autoincrement, stream_id text, version integer, \
     type text, data text, created_at text default current_timestamp, unique (stream_id, version))";

/// Runs the SQLite workloads into `report` in a fresh directory, which it removes.
pub(super) async fn main(args: &StoreArgs, name: &str, report: &mut Report) -> Result<String, BoxError> {
    let dir = args.sqlite_dir.join(name);
    tokio::fs::create_dir_all(&dir).await?;
    eprintln!("SQLite: files in {}", dir.display());
    let result = run(args, &dir, report).await;
    if args.keep {
        eprintln!("kept {}", dir.display());
    } else if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    result
}

/// The baseline's connections, through rusqlite: the C library called in the caller's own
/// task, with no thread or channel between (sqlx-sqlite runs each connection on a thread of
/// its own and sends every statement and row across; the client-choice row measures that).
/// Each call blocks its task for one statement, which a server would not do; as the floor a
/// client can reach, it is the baseline.
struct Base {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Base {
    fn open(path: &Path) -> Result<Self, BoxError> {
        let connect = || -> Result<Connection, BoxError> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "wal")?;
            conn.pragma_update(None, "synchronous", "full")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // The store's durability, checked: WAL, and a sync of the WAL at every commit.
            let journal: String = conn.query_row("pragma journal_mode", [], |row| row.get(0))?;
            let synchronous: i64 = conn.query_row("pragma synchronous", [], |row| row.get(0))?;
            if journal != "wal" || synchronous != 2 {
                return Err(format!("baseline connection in journal_mode={journal}, synchronous={synchronous}").into());
            }
            Ok(conn)
        };
        let writer = connect()?;
        writer.execute(TABLE, [])?;
        let readers = (0..4).map(|_| connect()).collect::<Result<Vec<_>, _>>()?;
        Ok(Base {
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, BoxError> {
        self.writer.lock().map_err(|_| "the baseline's writer lock was poisoned".into())
    }

    /// Runs `read` on a reader connection taken for it.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T, BoxError>) -> Result<T, BoxError> {
        let taken = self.readers.lock().map_err(|_| "poisoned")?.pop();
        let conn = taken.ok_or("no reader connection free")?;
        let result = read(&conn);
        self.readers.lock().map_err(|_| "poisoned")?.push(conn);
        result
    }

    async fn insert_one(&self, data: &str) -> Result<u64, BoxError> {
        self.writer()?
            .prepare_cached("insert into raw_events (stream_id, version, type, data) values (?, 1, 'ItemAddedToCart', ?)")?
            .execute(params![format!("cart-{}", Uuid::new_v4()), data])?;
        Ok(1)
    }

    /// One INSERT of `data.len()` rows; `sql` is [`insert_rows_sql`] for that many.
    async fn insert_many(&self, sql: &str, stream_id: &str, expected: i64, data: &[String]) -> Result<u64, BoxError> {
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(data.len() * 3);
        let versions: Vec<i64> = (1..=data.len() as i64).map(|i| expected + i).collect();
        for (version, d) in versions.iter().zip(data) {
            params.push(&stream_id);
            params.push(version);
            params.push(d);
        }
        self.writer()?.prepare_cached(sql)?.execute(params.as_slice())?;
        Ok(data.len() as u64)
    }

    async fn load(&self, stream_id: &str) -> Result<usize, BoxError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(BY_STREAM)?;
            let mut rows = statement.query([stream_id])?;
            let mut loaded = Vec::new();
            while let Some(row) = rows.next()? {
                let event: CartEvent = typed(row.get_ref(2)?.as_str()?, row.get_ref(3)?.as_bytes()?)?;
                loaded.push((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, event));
            }
            Ok(loaded.len())
        })
    }

    async fn page(&self, after: i64) -> Result<Vec<i64>, BoxError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "select global_position, stream_id, version, type, data, created_at from raw_events where global_position > ? order by global_position limit ?",
            )?;
            let mut rows = statement.query(params![after, ours::PAGE as i64])?;
            let mut positions = Vec::with_capacity(ours::PAGE);
            while let Some(row) = rows.next()? {
                let _decoded: (&str, i64, CartEvent, &str) = (
                    row.get_ref(1)?.as_str()?,
                    row.get(2)?,
                    typed(row.get_ref(3)?.as_str()?, row.get_ref(4)?.as_bytes()?)?,
                    row.get_ref(5)?.as_str()?,
                );
                positions.push(row.get(0)?);
            }
            Ok(positions)
        })
    }
}

/// The text of one INSERT of `rows` events of a stream.
fn insert_rows_sql(rows: usize) -> String {
    let values = vec!["(?, ?, 'ItemAddedToCart', ?)"; rows].join(", ");
    format!("insert into raw_events (stream_id, version, type, data) values {values}")
}

const BY_STREAM: &str = "select global_position, version, type, data from raw_events where stream_id = ? order by version";

/// The baseline's W3 load through sqlx-sqlite instead, for the client-choice row.
async fn load_with_sqlx(pool: &SqlitePool, stream_id: &str) -> Result<usize, BoxError> {
    let rows = sqlx::query(BY_STREAM).bind(stream_id).fetch_all(pool).await?;
    let mut loaded = Vec::with_capacity(rows.len());
    for row in &rows {
        let event: CartEvent = typed(row.try_get(2)?, row.try_get::<&str, _>(3)?.as_bytes())?;
        loaded.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?, event));
    }
    Ok(loaded.len())
}

async fn run(args: &StoreArgs, dir: &Path, report: &mut Report) -> Result<String, BoxError> {
    let store_path = dir.join("store.db");
    let sqlite = SqliteStore::connect_with(&format!("sqlite:{}", store_path.display()), SqliteStoreOptions::default()).await?;
    let store: Arc<dyn EventStore> = Arc::new(sqlite.clone());
    let base_path = dir.join("baseline.db");
    let base = Arc::new(Base::open(&base_path)?);
    let version = rusqlite::version();
    let about = format!(
        "SQLite {version} (files in {}): baseline table `{}`, WAL, synchronous=FULL; rusqlite {RUSQLITE}, statements prepared once per connection, called in the caller's task, one writer connection that writers take turns on and 4 readers; store: `SqliteStore` (the same modes, its default pools).",
        dir.display(),
        TABLE.trim_start_matches("create table ")
    );
    eprintln!("{about}");

    // Each side's event made once and shared, as on Postgres (`pg.rs`).
    let event = Arc::new(item_added(0));
    let data: Arc<str> = serde_json::to_string(&event_data(&event))?.into();
    let ours_op = {
        let (store, event) = (store.clone(), event.clone());
        move |_: usize| {
            let (store, event) = (store.clone(), event.clone());
            async move { ours::append_new(&store, &event).await }
        }
    };
    let base_op = {
        let (base, data) = (base.clone(), data.clone());
        move |_: usize| {
            let (base, data) = (base.clone(), data.clone());
            async move { base.insert_one(&data).await }
        }
    };
    for &n in &args.w1_writers {
        let (ours, baseline) = alternate(
            args.passes,
            || drive(n, args.warm(), args.measure(), ours_op.clone()),
            || drive(n, args.warm(), args.measure(), base_op.clone()),
        )
        .await?;
        eprintln!("SQLite W1 {n}: store {:.0}, baseline {:.0} events/s", ours.median(), baseline.median());
        report.rate(
            format!("W1 1-event appends to new streams, {n} writer(s): events/s"),
            &ours,
            &baseline,
            Target::None,
        );
    }

    let n = args.w2_writers;
    let ours_op = {
        let (store, streams, events) = (store.clone(), slots(n), Arc::new(ten()));
        move |writer: usize| {
            let (store, streams, events) = (store.clone(), streams.clone(), events.clone());
            async move {
                let (stream, version) = next_slot(&streams, writer, "order")?;
                let version = ours::append_after(&store, &stream, version, &events).await?;
                set_slot(&streams, writer, version);
                Ok(10)
            }
        }
    };
    let base_op = {
        let (base, streams) = (base.clone(), slots(n));
        let data = Arc::new(
            ten()
                .iter()
                .map(|e| serde_json::to_string(&event_data(e)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let sql: Arc<str> = insert_rows_sql(data.len()).into();
        move |writer: usize| {
            let (base, streams, data, sql) = (base.clone(), streams.clone(), data.clone(), sql.clone());
            async move {
                let (stream, version) = next_slot(&streams, writer, "order")?;
                base.insert_many(&sql, &stream, i64::try_from(version)?, &data).await?;
                set_slot(&streams, writer, version + 10);
                Ok(10)
            }
        }
    };
    let (ours, baseline) = alternate(
        args.passes,
        || drive(n, args.warm(), args.measure(), ours_op.clone()),
        || drive(n, args.warm(), args.measure(), base_op.clone()),
    )
    .await?;
    eprintln!("SQLite W2: store {:.0}, baseline {:.0} events/s", ours.median(), baseline.median());
    report.rate(
        format!("W2 10-event appends, expected version, {n} writers: events/s"),
        &ours,
        &baseline,
        Target::None,
    );

    // W3 and W4 read identical events: the baseline's table becomes a copy of the store's log.
    let long = format!("cart-{}", Uuid::new_v4());
    let short = format!("cart-{}", Uuid::new_v4());
    for i in 0..10 {
        ours::append_after(&store, &long, i * 100, &(0..100).map(item_added).collect::<Vec<_>>()).await?;
    }
    ours::append_after(&store, &short, 0, &ten()).await?;
    {
        let conn = base.writer()?;
        conn.execute("attach database ? as s", [store_path.display().to_string()])?;
        conn.execute("delete from raw_events", [])?;
        conn.execute(
            "insert into raw_events (global_position, stream_id, version, type, data, created_at)
             select position, stream_id, version, event_type, data, recorded_at from s.events order by position",
            [],
        )?;
        conn.execute("detach database s", [])?;
    }

    for (stream, events) in [(&long, 1000), (&short, 10)] {
        let (ours, baseline) = loads(
            args.passes,
            args.w3_rounds,
            events,
            || async { Ok(ours::load(&store, stream).await?.len()) },
            || base.load(stream),
        )
        .await
        .map_err(|e| format!("SQLite W3 (store first, baseline second): {e}"))?;
        eprintln!("SQLite W3 {events}: store {:.2} ms, baseline {:.2} ms", ours.median(), baseline.median());
        report.time(format!("W3 load a {events}-event stream: ms"), &ours, &baseline, Target::None);
    }

    // Which client the baseline uses: its own load through sqlx-sqlite (a reader pool as the
    // store's) against rusqlite, alternating.
    let sqlx_readers = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(SqliteConnectOptions::from_str(&format!("sqlite:{}", base_path.display()))?)
        .await?;
    let (with_sqlx, with_rusqlite) = loads(
        args.passes,
        args.w3_rounds,
        1000,
        || load_with_sqlx(&sqlx_readers, &long),
        || base.load(&long),
    )
    .await
    .map_err(|e| format!("SQLite client choice (sqlx first, rusqlite second): {e}"))?;
    sqlx_readers.close().await;
    report.time(
        "(client choice) the baseline's W3 1,000-event load through sqlx (store column) vs rusqlite (baseline column): ms",
        &with_sqlx,
        &with_rusqlite,
        Target::None,
    );

    let total: i64 = base.read(|conn| Ok(conn.query_row("select count(*) from raw_events", [], |row| row.get(0))?))?;
    let whole_log = |read: usize, started: Instant| {
        if read as i64 != total {
            return Err(BoxError::from(format!("SQLite W4 read {read} events, expected {total}")));
        }
        Ok(read as f64 / started.elapsed().as_secs_f64())
    };
    let (ours, baseline) = alternate(
        args.passes,
        || async {
            let started = Instant::now();
            whole_log(ours::read_log(|after| ours::page(&store, after)).await?, started)
        },
        || async {
            let started = Instant::now();
            whole_log(ours::read_log(|after| base.page(after)).await?, started)
        },
    )
    .await?;
    eprintln!("SQLite W4: store {:.0}, baseline {:.0} events/s", ours.median(), baseline.median());
    report.rate(
        format!("W4 read the global log ({total} events), pages of 1,000: events/s"),
        &ours,
        &baseline,
        Target::None,
    );
    drop(base);
    sqlite.pool().writer.close().await;
    Ok(about)
}

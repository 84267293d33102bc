//! The SQLite half: `SqliteStore` against a minimal SQLite baseline, each in its own file.
//!
//! The baseline: the six columns in SQLite types, WAL with `synchronous = FULL`
//! (what the store uses: an acknowledged append survives a power loss), and, like the store,
//! one writer connection that writers take turns on (SQLite has one write lock; queueing in
//! the process beats SQLite's busy loop) and a pool of readers. W1 is one INSERT in
//! autocommit, W2 one 10-row INSERT, W3 one SELECT by stream, W4 pages by position; rows
//! decode `data` straight from its text into the typed event. The live tail is left out:
//! with one writer both sides commit in position order and cannot skip.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use domain::CartEvent;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;
use store::{EventStore, SqliteStore, SqliteStoreOptions};
use uuid::Uuid;

use super::baseline::typed;
use super::measure::{alternate, drive, loads};
use super::pg::{event_data, next_slot, set_slot, slots};
use super::report::{Report, Target};
use super::{item_added, ours, ten, BoxError, StoreArgs};

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

/// The baseline's two pools.
struct Base {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl Base {
    async fn open(path: &Path) -> Result<Self, BoxError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::query(TABLE).execute(&writer).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        Ok(Base { writer, reader })
    }

    async fn insert_one(&self, data: &str) -> Result<u64, BoxError> {
        sqlx::query("insert into raw_events (stream_id, version, type, data) values (?, 1, 'ItemAddedToCart', ?)")
            .bind(format!("cart-{}", Uuid::new_v4()))
            .bind(data)
            .execute(&self.writer)
            .await?;
        Ok(1)
    }

    async fn insert_many(&self, stream_id: &str, expected: i64, data: &[String]) -> Result<u64, BoxError> {
        let values = vec!["(?, ?, 'ItemAddedToCart', ?)"; data.len()].join(", ");
        let sql = format!("insert into raw_events (stream_id, version, type, data) values {values}");
        let mut query = sqlx::query(&sql);
        for (i, d) in data.iter().enumerate() {
            query = query.bind(stream_id).bind(expected + 1 + i as i64).bind(d);
        }
        query.execute(&self.writer).await?;
        Ok(data.len() as u64)
    }

    async fn load(&self, stream_id: &str) -> Result<usize, BoxError> {
        let rows = sqlx::query("select global_position, version, type, data from raw_events where stream_id = ? order by version")
            .bind(stream_id)
            .fetch_all(&self.reader)
            .await?;
        let mut loaded = Vec::with_capacity(rows.len());
        for row in &rows {
            let event: CartEvent = typed(row.try_get(2)?, row.try_get::<&str, _>(3)?.as_bytes())?;
            loaded.push((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?, event));
        }
        Ok(loaded.len())
    }

    async fn page(&self, after: i64) -> Result<Vec<i64>, BoxError> {
        let rows = sqlx::query(
            "select global_position, stream_id, version, type, data, created_at from raw_events where global_position > ? order by global_position limit ?",
        )
        .bind(after)
        .bind(ours::PAGE as i64)
        .fetch_all(&self.reader)
        .await?;
        let mut positions = Vec::with_capacity(rows.len());
        for row in &rows {
            let _decoded: (&str, i64, CartEvent, &str) = (
                row.try_get(1)?,
                row.try_get(2)?,
                typed(row.try_get(3)?, row.try_get::<&str, _>(4)?.as_bytes())?,
                row.try_get(5)?,
            );
            positions.push(row.try_get(0)?);
        }
        Ok(positions)
    }
}

async fn run(args: &StoreArgs, dir: &Path, report: &mut Report) -> Result<String, BoxError> {
    let store_path = dir.join("store.db");
    let sqlite = SqliteStore::connect_with(&format!("sqlite:{}", store_path.display()), SqliteStoreOptions::default()).await?;
    let store: Arc<dyn EventStore> = Arc::new(sqlite.clone());
    let base = Arc::new(Base::open(&dir.join("baseline.db")).await?);
    let version: String = sqlx::query_scalar("select sqlite_version()").fetch_one(&base.reader).await?;
    let about = format!(
        "SQLite {version} (files in {}): baseline table `{}`, WAL, synchronous=FULL, one writer connection and 4 readers; store: `SqliteStore` (the same modes, its default pools).",
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
        move |writer: usize| {
            let (base, streams, data) = (base.clone(), streams.clone(), data.clone());
            async move {
                let (stream, version) = next_slot(&streams, writer, "order")?;
                base.insert_many(&stream, i64::try_from(version)?, &data).await?;
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
    let mut conn = base.writer.acquire().await?;
    sqlx::query("attach database ? as s")
        .bind(store_path.display().to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query("delete from raw_events").execute(&mut *conn).await?;
    sqlx::query(
        "insert into raw_events (global_position, stream_id, version, type, data, created_at)
         select position, stream_id, version, event_type, data, recorded_at from s.events order by position",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("detach database s").execute(&mut *conn).await?;
    drop(conn);

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

    let total: i64 = sqlx::query_scalar("select count(*) from raw_events").fetch_one(&base.reader).await?;
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
    base.writer.close().await;
    base.reader.close().await;
    sqlite.pool().writer.close().await;
    Ok(about)
}

//! `cartsource-bench store`: the Postgres event store against a raw-SQL baseline measured
//! in the same run, on the same server, with the same pool sizes.
//!
//!     cargo run --release -p bench --features run -- store --help
//!
//! The baseline table `raw_events` is `create table ... (like events including all)`: the
//! same columns, constraints and indexes. Its writes are plain single-row INSERTs in
//! autocommit with a client-side position and no checks; its reads are plain SELECTs whose
//! rows are decoded into the same Rust types (JSON into `serde_json::Value`).
//!
//! Workloads (issue #3): W1 single-event appends to new streams (1, 8, 32 writers); W2
//! 10-event appends with an expected version (8 writers, against the raw single-row
//! baseline at 8 writers); W3 loading a 1,000-event stream; W4 reading the whole global log
//! in pages. A fresh database `cartsource_bench_<random>` is created and dropped.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::{Connection, PgConnection};
use store::postgres::PgStoreOptions;
use store::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, PgStore, Position, StoreError};
use uuid::Uuid;

mod measure;
mod raw;
mod report;

use measure::compare;
use raw::{raw_feed, raw_insert, raw_insert_batch, raw_stream};
use report::{latency, median, percent, rate, Report};

/// The options of `cartsource-bench store`.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Server to benchmark; a fresh database is created on it and dropped at the end.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    url: String,
    /// Seconds per write measurement (each of W1 x3, W2, and their baselines).
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Slices each write measurement is cut into, alternating store and baseline.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Seconds of unmeasured warm-up before the first slice of each write measurement.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Writer counts for W1.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 8, 32])]
    w1_writers: Vec<usize>,
    /// Writers for W2.
    #[arg(long, default_value_t = 8)]
    w2_writers: usize,
    /// Events in the stream W3 loads.
    #[arg(long, default_value_t = 1000)]
    w3_events: u64,
    /// Times W3 loads the stream (the median is reported).
    #[arg(long, default_value_t = 50)]
    w3_rounds: usize,
    /// Page size for W4.
    #[arg(long, default_value_t = 1000)]
    w4_page: usize,
    /// Times W4 reads the whole log (the median is reported).
    #[arg(long, default_value_t = 3)]
    w4_rounds: usize,
    /// Keep the benchmark database instead of dropping it.
    #[arg(long)]
    keep: bool,
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Creates the benchmark database, runs the workloads, prints the report, drops the database.
pub async fn main(args: StoreArgs) -> Result<(), BoxError> {
    let (prefix, query) = split_url(&args.url);
    let name = format!("cartsource_bench_{}", &Uuid::new_v4().simple().to_string()[..10]);
    let mut admin = PgConnection::connect(&args.url).await?;
    // `name` is ours (hex digits): identifiers cannot be bound as parameters.
    sqlx::query(&format!("create database {name}")).execute(&mut admin).await?;
    let bench_url = format!("{prefix}/{name}{query}");
    eprintln!("benchmark database {name}");

    let result = run(&args, &bench_url).await;

    if args.keep {
        eprintln!("kept database {name}");
    } else if let Err(e) = sqlx::query(&format!("drop database {name} with (force)")).execute(&mut admin).await {
        eprintln!("could not drop {name}: {e}");
    }
    result
}

/// `postgres://u@h:p/db?x` -> (`postgres://u@h:p`, `?x`).
fn split_url(url: &str) -> (&str, &str) {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    match base[host_start..].rfind('/') {
        Some(i) => (&base[..host_start + i], query),
        None => (base, query),
    }
}

async fn run(args: &StoreArgs, url: &str) -> Result<(), BoxError> {
    let max_writers = args.w1_writers.iter().copied().chain([args.w2_writers]).max().unwrap_or(1).max(1);
    let pool_size = u32::try_from(max_writers).unwrap_or(u32::MAX);
    let options = PgStoreOptions {
        max_connections: pool_size,
        ..Default::default()
    };
    let store = PgStore::connect_with(url, options.clone()).await?;
    // The baseline's pool is built exactly like the store's.
    let raw_pool = store::postgres::pool_options(&options).connect(url).await?;
    sqlx::query("create table raw_events (like events including all)")
        .execute(&raw_pool)
        .await?;

    let settings: Vec<String> = {
        let mut out = Vec::new();
        for setting in ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"] {
            let value: String = sqlx::query_scalar(&format!("show {setting}")).fetch_one(&raw_pool).await?;
            out.push(format!("{setting}={value}"));
        }
        out
    };
    println!("PostgreSQL: {}", settings.join(", "));
    println!(
        "machine: {} cores; pools of {pool_size} connections for both; {} s per write measurement in {} alternating slices after {} s warm-up",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.seconds,
        args.rounds,
        args.warmup
    );

    let mut report = Report::default();
    let raw_position = Arc::new(AtomicI64::new(0));

    // W1: single-event appends to new streams.
    let raw_single = {
        let (pool, position) = (raw_pool.clone(), raw_position.clone());
        move |_: usize| {
            let (pool, position) = (pool.clone(), position.clone());
            async move { raw_insert(&pool, &position, &new_event(0)).await.map(|_| 1) }
        }
    };
    for &writers in &args.w1_writers {
        let ours = {
            let store = store.clone();
            move |_: usize| {
                let store = store.clone();
                async move {
                    let request = AppendRequest::single(format!("cart-{}", Uuid::new_v4()), ExpectedVersion::NoStream, vec![new_event(0)]);
                    store.append(request).await.map(|_| 1)
                }
            }
        };
        let (ours, raw) = compare(writers, args, ours, raw_single.clone()).await?;
        let target = match writers {
            8 => ">= 80%",
            _ => "(info)",
        };
        report.add(
            format!("W1 1-event appends, {writers} writers: events/s"),
            rate(&ours),
            rate(&raw),
            percent(ours.rate() / raw.rate()),
            target,
        );
        report.add(
            format!("W1 {writers} writers: latency p50 / p99 ms"),
            latency(&ours),
            latency(&raw),
            String::new(),
            "",
        );
    }

    // W2: 10-event appends with the expected version, each writer on streams of its own,
    // against single-row inserts by as many writers.
    let ours = {
        let store = store.clone();
        let streams: Arc<Vec<std::sync::Mutex<(String, u64)>>> =
            Arc::new((0..args.w2_writers).map(|_| std::sync::Mutex::new((String::new(), 0))).collect());
        move |writer: usize| {
            let (store, streams) = (store.clone(), streams.clone());
            async move {
                // A stream gets 100 events (10 appends), then the writer starts another.
                let (stream, version) = {
                    let mut slot = streams[writer].lock().map_err(|_| StoreError::InvalidRequest("poisoned".into()))?;
                    if slot.0.is_empty() || slot.1 >= 100 {
                        *slot = (format!("order-{}", Uuid::new_v4()), 0);
                    }
                    slot.clone()
                };
                let expected = if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                };
                let outcome = store
                    .append(AppendRequest::single(&stream, expected, (0..10).map(new_event).collect()))
                    .await?;
                if let Ok(mut slot) = streams[writer].lock() {
                    slot.1 = outcome.streams[0].last_version;
                }
                Ok(10)
            }
        }
    };
    let (ours_w2, raw) = compare(args.w2_writers, args, ours.clone(), raw_single.clone()).await?;
    let ours_op = ours;
    let ours = ours_w2;
    report.add(
        format!("W2 10-event appends, expected version, {} writers: events/s", args.w2_writers),
        rate(&ours),
        format!("{} (1-row inserts)", rate(&raw)),
        percent(ours.rate() / raw.rate()),
        ">= 70%",
    );
    report.add("W2 latency per append p50 / p99 ms", latency(&ours), latency(&raw), String::new(), "");
    // For scale: the same batches as plain 10-row INSERTs (not a target).
    let raw_batches = {
        let (pool, position) = (raw_pool.clone(), raw_position.clone());
        move |_: usize| {
            let (pool, position) = (pool.clone(), position.clone());
            async move {
                raw_insert_batch(&pool, &position, &(0..10).map(new_event).collect::<Vec<_>>())
                    .await
                    .map(|_| 10)
            }
        }
    };
    let (ours, raw) = compare(args.w2_writers, args, ours_op, raw_batches).await?;
    report.add(
        format!("W2 again, against 10-row INSERTs, {} writers: events/s", args.w2_writers),
        rate(&ours),
        format!("{} (10-row inserts)", rate(&raw)),
        percent(ours.rate() / raw.rate()),
        "(info)",
    );

    // W3 and W4 read identical rows: raw_events becomes a copy of events.
    let w3_stream = format!("cart-{}", Uuid::new_v4());
    let mut version = 0;
    while version < args.w3_events {
        let n = (args.w3_events - version).min(100);
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        store
            .append(AppendRequest::single(&w3_stream, expected, (0..n).map(new_event).collect()))
            .await?;
        version += n;
    }
    sqlx::query("truncate raw_events").execute(&raw_pool).await?;
    sqlx::query("insert into raw_events select * from events").execute(&raw_pool).await?;
    sqlx::query("vacuum analyze events").execute(&raw_pool).await?;
    sqlx::query("vacuum analyze raw_events").execute(&raw_pool).await?;

    // W3: load a stream.
    let mut ours_ms = Vec::with_capacity(args.w3_rounds);
    let mut raw_ms = Vec::with_capacity(args.w3_rounds);
    for round in 0..args.w3_rounds + 3 {
        let started = Instant::now();
        let events = store.read_stream(&w3_stream, 1, usize::MAX).await?;
        let ours = started.elapsed();
        let started = Instant::now();
        let rows = raw_stream(&raw_pool, &w3_stream).await?;
        let raw = started.elapsed();
        if events.len() as u64 != args.w3_events || rows != events.len() {
            return Err(format!(
                "W3 read {} events from the store and {rows} raw, expected {}",
                events.len(),
                args.w3_events
            )
            .into());
        }
        if round >= 3 {
            ours_ms.push(ours.as_secs_f64() * 1e3);
            raw_ms.push(raw.as_secs_f64() * 1e3);
        }
    }
    let (ours, raw) = (median(&mut ours_ms), median(&mut raw_ms));
    report.add(
        format!("W3 load a {}-event stream: ms (median)", args.w3_events),
        format!("{ours:.2}"),
        format!("{raw:.2}"),
        format!("{:.2}x", ours / raw),
        "<= 1.5x",
    );

    // W4: the whole global log, page by page.
    let total: i64 = sqlx::query_scalar("select count(*) from events").fetch_one(&raw_pool).await?;
    let mut ours_rates = Vec::new();
    let mut raw_rates = Vec::new();
    for _ in 0..args.w4_rounds {
        let started = Instant::now();
        let mut after = Position::START;
        let mut read = 0usize;
        loop {
            let page = store.read_all(after, args.w4_page, None).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            read += page.len();
        }
        ours_rates.push(read as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let raw_read = raw_feed(&raw_pool, args.w4_page).await?;
        raw_rates.push(raw_read as f64 / started.elapsed().as_secs_f64());
        if read as i64 != total || raw_read as i64 != total {
            return Err(format!("W4 read {read} events from the store and {raw_read} raw, expected {total}").into());
        }
    }
    let (ours, raw) = (median(&mut ours_rates), median(&mut raw_rates));
    report.add(
        format!("W4 read the global log ({total} events, pages of {}): events/s", args.w4_page),
        format!("{ours:.0}"),
        format!("{raw:.0}"),
        percent(ours / raw),
        ">= 70%",
    );

    println!();
    report.print();
    store.pool().close().await;
    raw_pool.close().await;
    Ok(())
}

pub(super) fn new_event(n: u64) -> NewEvent {
    NewEvent::new(
        "ItemAddedToCart",
        2,
        json!({ "sku": "apple", "name": "Apple", "quantity": n % 5 + 1, "unit_price": 120 }),
        Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: None,
            actor: "bench".into(),
            idempotency_key: None,
            trace: None,
        },
    )
}

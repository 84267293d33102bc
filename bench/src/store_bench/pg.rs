//! The Postgres half: `PgStore` against the minimal baseline, in one fresh database.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::{Connection, PgConnection};
use store::{EventStore, PgStore, PgStoreOptions};
use uuid::Uuid;

use super::baseline;
use super::measure::{alternate, drive, loads, store_first, tail, Samples, Tailed};
use super::report::{Report, Target};
use super::{item_added, ours, split_url, ten, BoxError, StoreArgs};

/// Creates the database, runs the workloads into `report`, drops the database. Returns the
/// line describing the server and the baseline.
pub(super) async fn main(args: &StoreArgs, name: &str, report: &mut Report) -> Result<String, BoxError> {
    let (prefix, query) = split_url(&args.url);
    let mut admin = PgConnection::connect(&args.url).await?;
    // `name` is ours (hex digits): identifiers cannot be bound as parameters.
    sqlx::query(&format!("create database {name}")).execute(&mut admin).await?;
    let url = format!("{prefix}/{name}{query}");
    eprintln!("Postgres: benchmark database {name}");
    let result = run(args, &url, report).await;
    if args.keep {
        eprintln!("kept database {name}");
    } else if let Err(e) = sqlx::query(&format!("drop database {name} with (force)")).execute(&mut admin).await {
        eprintln!("could not drop {name}: {e}");
    }
    result
}

async fn run(args: &StoreArgs, url: &str, report: &mut Report) -> Result<String, BoxError> {
    let writers = args.w1_writers.iter().copied().chain([args.w2_writers]).max().unwrap_or(1).max(1);
    let defaults = PgStoreOptions::default();
    let options = PgStoreOptions {
        max_connections: u32::try_from(writers + 1).unwrap_or(u32::MAX),
        group_commit_writers: args.group_commit_writers.unwrap_or(defaults.group_commit_writers),
        ..defaults
    };
    let group_writers = options.group_commit_writers;
    let pg = PgStore::connect_with(url, options).await?;
    let store: Arc<dyn EventStore> = Arc::new(pg.clone());
    let pool = pg.pool().clone();
    sqlx::query(baseline::TABLE).execute(&pool).await?;
    // One connection per writer, and one more for reads and the tail.
    let conns = baseline::connect(url, writers + 1).await?;
    let reader = writers;

    let mut settings = Vec::new();
    for setting in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
    ] {
        let row = conns[reader].client().query_one(&format!("show {setting}"), &[]).await?;
        settings.push(format!("{setting}={}", row.try_get::<_, String>(0)?));
    }
    let about = format!(
        "Postgres: {}. Baseline: table `{}`; tokio-postgres 0.7, statements prepared once per connection, one connection per writer. Store: `PgStore`, a pool of {} connections, group commit with at most {} statements in flight (0: off).",
        settings.join(", "),
        baseline::TABLE.trim_start_matches("create table "),
        writers + 1,
        group_writers
    );
    eprintln!("{about}");

    // W1: single-event appends to new streams (also what the writers of W4 live do). Each
    // side's event is made once and shared: the store encodes it on every append, as the
    // command path does, the baseline's client serialises its JSON tree on every insert.
    let event = Arc::new(item_added(0));
    let ours_append_new = {
        let (store, event) = (store.clone(), event.clone());
        move |_: usize| {
            let (store, event) = (store.clone(), event.clone());
            async move { ours::append_new(&store, &event).await }
        }
    };
    let base_append_new = {
        let (conns, data) = (conns.clone(), Arc::new(event_data(&event)));
        move |writer: usize| {
            let (conns, data) = (conns.clone(), data.clone());
            async move {
                conns[writer]
                    .insert_one(&format!("cart-{}", Uuid::new_v4()), "ItemAddedToCart", &data)
                    .await
            }
        }
    };
    for &n in &args.w1_writers {
        let (ours, base) = alternate(
            args.passes,
            || drive(n, args.warm(), args.measure(), ours_append_new.clone()),
            || drive(n, args.warm(), args.measure(), base_append_new.clone()),
        )
        .await?;
        eprintln!("W1 {n} writers: store {:.0}, baseline {:.0} events/s", ours.median(), base.median());
        let target = match n {
            1 => Target::AtLeast(0.9),
            8 => Target::AtLeast(0.8),
            32 => Target::AtLeast(1.0),
            _ => Target::None,
        };
        report.rate(
            format!("W1 1-event appends to new streams, {n} writer(s): events/s"),
            &ours,
            &base,
            target,
        );
    }

    // Where W1's gap at 1 writer is: the store's own statement through the baseline's client
    // (prepared, one connection), against the baseline's INSERT. What is left between this
    // and the store's W1 row is the store's code around the statement.
    let statement_op = {
        let conns = conns.clone();
        // The event as the store's side encodes it (its schema version, data and metadata).
        let encoded = Arc::new(ours::encode(std::slice::from_ref(&event)).remove(0));
        move |writer: usize| {
            let (conns, encoded) = (conns.clone(), encoded.clone());
            async move { conns[writer].store_append(&format!("cart-{}", Uuid::new_v4()), &encoded).await }
        }
    };
    let (statement, base) = alternate(
        args.passes,
        || drive(1, args.warm(), args.measure(), statement_op.clone()),
        || drive(1, args.warm(), args.measure(), base_append_new.clone()),
    )
    .await?;
    eprintln!(
        "W1 1 writer, the store's statement: {:.0}, baseline {:.0} events/s",
        statement.median(),
        base.median()
    );
    report.rate(
        "(where W1's gap is) the store's statement for a new stream's event through the baseline's client (store column) vs the baseline's INSERT, 1 writer: events/s",
        &statement,
        &base,
        Target::None,
    );

    // W2: 10-event appends with the expected version; each writer fills a stream to 100
    // events, then starts another.
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
        let (conns, streams) = (conns.clone(), slots(n));
        let data: Arc<Vec<serde_json::Value>> = Arc::new(ten().iter().map(domain::Event::to_data).collect());
        move |writer: usize| {
            let (conns, streams, data) = (conns.clone(), streams.clone(), data.clone());
            async move {
                let (stream, version) = next_slot(&streams, writer, "order")?;
                let version = i64::try_from(version)?;
                conns[writer].insert_many(&stream, version, &["ItemAddedToCart"; 10], &data).await?;
                set_slot(&streams, writer, u64::try_from(version + 10)?);
                Ok(10)
            }
        }
    };
    let (ours, base) = alternate(
        args.passes,
        || drive(n, args.warm(), args.measure(), ours_op.clone()),
        || drive(n, args.warm(), args.measure(), base_op.clone()),
    )
    .await?;
    eprintln!("W2: store {:.0}, baseline {:.0} events/s", ours.median(), base.median());
    report.rate(
        format!("W2 10-event appends, expected version, {n} writers: events/s"),
        &ours,
        &base,
        Target::AtLeast(0.7),
    );

    // W3 and W4 read identical events: two streams written through the store, then the
    // baseline's table replaced by a copy of the store's log.
    let long = format!("cart-{}", Uuid::new_v4());
    let short = format!("cart-{}", Uuid::new_v4());
    for i in 0..10 {
        ours::append_after(&store, &long, i * 100, &(0..100).map(item_added).collect::<Vec<_>>()).await?;
    }
    ours::append_after(&store, &short, 0, &ten()).await?;
    for sql in [
        "truncate raw_events",
        "insert into raw_events (global_position, stream_id, version, type, data, created_at)
         select row_number() over (order by position), stream_id, version, event_type, data, recorded_at from events order by position",
        "select setval('raw_events_global_position_seq', (select max(global_position) from raw_events))",
        "vacuum analyze events",
        "vacuum analyze raw_events",
    ] {
        sqlx::query(sql).execute(&pool).await?;
    }

    // W3: load a stream (the median of `w3_rounds` loads per pass).
    for (stream, events) in [(&long, 1000), (&short, 10)] {
        let (ours, base) = loads(
            args.passes,
            args.w3_rounds,
            events,
            || async { Ok(ours::load(&store, stream).await?.len()) },
            || async { Ok(conns[reader].load(stream).await?.len()) },
        )
        .await
        .map_err(|e| format!("W3 (store first, baseline second): {e}"))?;
        eprintln!("W3 {events}: store {:.2} ms, baseline {:.2} ms", ours.median(), base.median());
        report.time(format!("W3 load a {events}-event stream: ms"), &ours, &base, Target::AtMost(1.5));
    }

    // Which client the baseline should use: its W3 query through sqlx (the store's pool)
    // against tokio-postgres, the same decoding.
    let (with_sqlx, with_tokio_postgres) = loads(
        args.passes,
        args.w3_rounds,
        1000,
        || baseline::load_with_sqlx(&pool, &long),
        || async { Ok(conns[reader].load(&long).await?.len()) },
    )
    .await
    .map_err(|e| format!("client choice (sqlx first, tokio-postgres second): {e}"))?;
    report.time(
        "(client choice) the baseline's W3 1,000-event load through sqlx (store column) vs tokio-postgres (baseline column): ms",
        &with_sqlx,
        &with_tokio_postgres,
        Target::None,
    );

    // W4: the whole global log in pages of 1,000.
    let total: i64 = sqlx::query_scalar("select count(*) from events").fetch_one(&pool).await?;
    let whole_log = |read: usize, started: Instant| {
        if read as i64 != total {
            return Err(BoxError::from(format!("W4 read {read} events, expected {total}")));
        }
        Ok(read as f64 / started.elapsed().as_secs_f64())
    };
    let (ours, base) = alternate(
        args.passes,
        || async {
            let started = Instant::now();
            whole_log(ours::read_log(|after| ours::page(&store, after)).await?, started)
        },
        || async {
            let started = Instant::now();
            whole_log(ours::read_log(|after| conns[reader].page(after, ours::PAGE as i64)).await?, started)
        },
    )
    .await?;
    eprintln!("W4: store {:.0}, baseline {:.0} events/s", ours.median(), base.median());
    report.rate(
        format!("W4 read the global log ({total} events), pages of 1,000: events/s"),
        &ours,
        &base,
        Target::AtLeast(0.7),
    );

    // W4 live: a tail of the log while `n` writers append single events to new streams.
    let mut tails: [Vec<Tailed>; 2] = [Vec::new(), Vec::new()];
    for pass in 0..args.passes {
        for side in if store_first(pass) { [0, 1] } else { [1, 0] } {
            let tailed = if side == 0 {
                let after: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from events")
                    .fetch_one(&pool)
                    .await?;
                let op = ours_append_new.clone();
                let committed = || async {
                    Ok(sqlx::query_scalar("select position from events where position > $1")
                        .bind(after)
                        .fetch_all(&pool)
                        .await?)
                };
                tail(n, args.measure(), after, |after| ours::page(&store, after), op, committed).await?
            } else {
                let after: i64 = sqlx::query_scalar("select coalesce(max(global_position), 0) from raw_events")
                    .fetch_one(&pool)
                    .await?;
                let op = base_append_new.clone();
                let committed = || async {
                    Ok(sqlx::query_scalar("select global_position from raw_events where global_position > $1")
                        .bind(after)
                        .fetch_all(&pool)
                        .await?)
                };
                tail(
                    n,
                    args.measure(),
                    after,
                    |after| conns[reader].page(after, ours::PAGE as i64),
                    op,
                    committed,
                )
                .await?
            };
            tails[side].push(tailed);
        }
    }
    let samples = |side: usize, f: fn(&Tailed) -> f64| Samples(tails[side].iter().map(f).collect());
    let (ours, base) = (samples(0, |t| t.rate), samples(1, |t| t.rate));
    eprintln!("W4 live: store {:.0}, baseline {:.0} events/s", ours.median(), base.median());
    report.rate(
        format!("W4 live tail while {n} writers append: events/s"),
        &ours,
        &base,
        Target::AtLeast(0.8),
    );
    report.count(
        "W4 live tail: events skipped (all passes)",
        &samples(0, |t| t.skipped as f64),
        &samples(1, |t| t.skipped as f64),
        Target::Exactly(0.0),
    );
    report.count(
        "W4 live tail: events duplicated (all passes)",
        &samples(0, |t| t.duplicated as f64),
        &samples(1, |t| t.duplicated as f64),
        Target::Exactly(0.0),
    );
    Ok(about)
}

pub(super) fn event_data(event: &domain::CartEvent) -> serde_json::Value {
    domain::Event::to_data(event)
}

pub(super) type Slots = Arc<Vec<Mutex<(String, u64)>>>;

pub(super) fn slots(writers: usize) -> Slots {
    Arc::new((0..writers).map(|_| Mutex::new((String::new(), 0))).collect())
}

/// The writer's current stream and its version: a new stream after 100 events.
pub(super) fn next_slot(slots: &Slots, writer: usize, category: &str) -> Result<(String, u64), BoxError> {
    let mut slot = slots[writer].lock().map_err(|_| "a writer panicked")?;
    if slot.0.is_empty() || slot.1 >= 100 {
        *slot = (format!("{category}-{}", Uuid::new_v4()), 0);
    }
    Ok(slot.clone())
}

pub(super) fn set_slot(slots: &Slots, writer: usize, version: u64) {
    if let Ok(mut slot) = slots[writer].lock() {
        slot.1 = version;
    }
}

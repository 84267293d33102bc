//! Read-side benchmark on PostgreSQL (a benchmark, not a test):
//!
//! 1. Rebuild throughput: seeds `--events` cart events (carts of 10 events: created, 8
//!    items added, 1 quantity changed), builds the read models once, then rebuilds the carts
//!    read model from position 0 and reports events per second.
//! 2. Visibility lag: with the workers running in the background, `--writers` tasks issue
//!    add-item commands through the command loop at `--rate` commands per second in total
//!    for `--seconds`; for each, the time from the append's return to the carts read model
//!    having applied its position (`Projections::wait_for`, woken by the worker's commit).
//!
//! `cargo run --release -p bench --features run -- projections --database-url postgres://postgres@127.0.0.1:5432/postgres`
//! Works in a fresh database of its own, dropped at the end.

use std::time::{Duration, Instant};

use ::projections::{Projections, ProjectionsConfig};
use commands::{encode, CartAggregate, CommandContext, Commands};
use domain::{CartCommand, CartEvent, CartId, CustomerId, Money, Sku};
use sqlx::Connection;
use store::{AppendRequest, Database, ExpectedVersion, Metadata};
use uuid::Uuid;

#[derive(clap::Args, Debug, Clone)]
pub struct ProjectionsArgs {
    /// A Postgres server URL whose role may create databases.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Cart events to seed for the rebuild.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Commands per second during the lag measurement (all writers together).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Concurrent writers during the lag measurement.
    #[arg(long, default_value_t = 8)]
    writers: u32,
    /// Length of the lag measurement.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs both measurements in a database of its own.
pub async fn main(args: ProjectionsArgs) -> Result<(), Error> {
    let (server, name) = create_database(&args.database_url).await?;
    let url = with_database(&args.database_url, &name);
    let result = run(&args, &url).await;
    drop_database(&server, &name).await;
    result
}

async fn run(args: &ProjectionsArgs, url: &str) -> Result<(), Error> {
    let db = store::open(url).await?;
    let seeded = seed(&db, args.events).await?;
    println!("seeded {seeded} cart events");

    let config = ProjectionsConfig {
        run_reactors: false,
        worker_name: "bench".into(),
        ..ProjectionsConfig::default()
    };
    let projections = Projections::new(db.clone(), config.clone());
    let started = Instant::now();
    projections.run_until_caught_up().await?;
    let first = started.elapsed();
    println!("initial build of all five read models: {:.1} s", first.as_secs_f64());

    projections.rebuild("carts").await?;
    let started = Instant::now();
    projections.run_until_caught_up().await?;
    let took = started.elapsed();
    let status = projections.status("carts").await?;
    assert!(status.rebuild_progress.is_none(), "the rebuild swapped in");
    println!(
        "carts rebuild: {seeded} events in {:.2} s = {:.0} events/s",
        took.as_secs_f64(),
        seeded as f64 / took.as_secs_f64()
    );

    lag(args, &db, config).await
}

/// Appends `events` cart events, 50 carts per atomic append.
async fn seed(db: &Database, events: usize) -> Result<usize, Error> {
    let store = db.store();
    let metadata = Metadata {
        actor: "bench".into(),
        ..Metadata::default()
    };
    let skus: Vec<Sku> = (0..200).map(|i| Sku::parse(&format!("sku-{i}"))).collect::<Result<_, _>>()?;
    let carts = events.div_ceil(10);
    let mut written = 0;
    for chunk in (0..carts).collect::<Vec<_>>().chunks(50) {
        let mut request = AppendRequest::default();
        for &i in chunk {
            let cart_id = CartId::from_uuid(Uuid::now_v7());
            let customer_id = CustomerId::parse(&format!("customer-{}", i % 1_000))?;
            let mut cart_events = vec![CartEvent::CartCreated { cart_id, customer_id }];
            for j in 0..8 {
                let sku = skus[(i * 7 + j * 13) % skus.len()].clone();
                cart_events.push(CartEvent::ItemAddedToCart {
                    sku,
                    name: format!("Product {j}"),
                    quantity: 1 + (j as u32 % 3),
                    unit_price: Money::from_minor(199 + j as i64),
                });
            }
            let sku = match &cart_events[1] {
                CartEvent::ItemAddedToCart { sku, .. } => sku.clone(),
                _ => unreachable!("the second event adds an item"),
            };
            cart_events.push(CartEvent::ItemQuantityChanged { sku, quantity: 5 });
            written += cart_events.len();
            request = request.with_stream(
                cart_id.stream_id(),
                ExpectedVersion::NoStream,
                cart_events.iter().map(|e| encode(e, &metadata)).collect(),
            );
        }
        store.append(request).await?;
    }
    Ok(written)
}

async fn lag(args: &ProjectionsArgs, db: &Database, config: ProjectionsConfig) -> Result<(), Error> {
    let projections = Projections::start(db.clone(), config, store::LiveFeed::start(db.store())).await?;
    let head = db.store().head_position().await?;
    projections.wait_for("carts", head, Duration::from_secs(120)).await?;

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let interval = Duration::from_secs_f64(f64::from(args.writers) / f64::from(args.rate.max(1)));
    let mut tasks = Vec::new();
    let commands = Commands::new(db.store());
    for w in 0..args.writers {
        let commands = commands.clone();
        let projections = projections.clone();
        tasks.push(tokio::spawn(async move {
            let mut lags = Vec::new();
            let customer = CustomerId::parse(&format!("lag-{w}")).map_err(|e| e.to_string())?;
            let cart_id = CartId::from_uuid(Uuid::now_v7());
            let ctx = CommandContext {
                actor: format!("lag-{w}"),
                ..CommandContext::default()
            };
            let create = CartCommand::Create {
                cart_id,
                customer_id: customer,
            };
            commands
                .execute::<CartAggregate, _, _>(&ctx, &cart_id.stream_id(), None, move |s| domain::cart::decide(s, create.clone()))
                .await
                .map_err(|e| e.to_string())?;
            let mut ticker = tokio::time::interval(interval);
            let mut n = 0u32;
            while Instant::now() < deadline {
                ticker.tick().await;
                n += 1;
                // Cycle skus so no line reaches the 999 limit.
                let sku = Sku::parse(&format!("lag-{}", n % 90)).map_err(|e| e.to_string())?;
                let command = CartCommand::AddItem {
                    sku,
                    quantity: 1,
                    name: "Lag".into(),
                    unit_price: Money::from_minor(100),
                };
                let done = commands
                    .execute::<CartAggregate, _, _>(&ctx, &cart_id.stream_id(), None, move |s| domain::cart::decide(s, command.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                let committed = Instant::now();
                projections
                    .wait_for("carts", done.position, Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                lags.push(committed.elapsed());
            }
            Ok::<Vec<Duration>, String>(lags)
        }));
    }
    let mut lags = Vec::new();
    for task in tasks {
        lags.extend(task.await??);
    }
    projections.shutdown().await;
    lags.sort();
    let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    println!(
        "visibility lag over {} commands at ~{} commands/s from {} writers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        args.rate,
        args.writers,
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        lags.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    Ok(())
}

async fn create_database(server: &str) -> Result<(String, String), Error> {
    let name = format!("cs_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = sqlx::PgConnection::connect(server).await?;
    // `name` is made of our own characters; identifiers cannot be bound.
    sqlx::query(&format!("create database \"{name}\"")).execute(&mut admin).await?;
    admin.close().await?;
    Ok((server.to_owned(), name))
}

async fn drop_database(server: &str, name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(server).await {
        if let Err(e) = sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
            .execute(&mut admin)
            .await
        {
            eprintln!("could not drop {name}: {e}");
        }
        let _ = admin.close().await;
    }
}

/// The server URL with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{prefix}/{name}{query}")
}

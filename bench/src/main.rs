//! `cartsource-bench`: the end-to-end benchmark of issue #10, item 8. It starts the real
//! `cartsource` server and a minimal CRUD GraphQL server on the same stack (the
//! baseline, `crud`) as child processes on fresh Postgres databases, drives both over
//! HTTP and WebSocket from this process, and prints a Markdown report. It depends only
//! on the public GraphQL contract and the `cartsource` binary's CLI and environment.
//! The benchmark reports; tests assert behaviour.
//!
//! `cartsource-bench store` (`store_bench`) measures the event store library alone against
//! a minimal SQL baseline on the same server (and SQLite against a minimal SQLite one).

mod crud;
mod driver;
mod projections;
mod report;
mod store_bench;
mod token;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use driver::{Binaries, Kind, Role, Server};
use report::{Meta, Results};
use workloads::{Http, Live};

#[derive(Debug, Parser)]
#[command(
    name = "cartsource-bench",
    about = "cartsource against a CRUD baseline, same run",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark and print the report (the default).
    Run(RunArgs),
    /// Serve the baseline (the driver starts it; useful alone to poke at).
    CrudServer(CrudArgs),
    /// The read side alone, in-process on Postgres: rebuild throughput and commit-to-read-model lag.
    Projections(projections::ProjectionsArgs),
    /// The event store (Postgres and SQLite) against a minimal baseline, issue #11 (no server, no HTTP).
    Store(store_bench::StoreArgs),
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// A Postgres database to connect to; the runs create and drop their own next to it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Passes; each runs both servers, in alternating order.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    passes: u32,
    /// Measured seconds per workload.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Unmeasured seconds before each closed-loop workload.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    warmup: u64,
    /// Subscribers in each live workload (d).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=5000))]
    subscribers: u64,
    /// Mutations per second of the writer in the live workloads.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    writer_rate: u32,
    /// Connections of the baseline's pool (cartsource's Postgres store defaults to 10).
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// Use this `cartsource` binary instead of building one.
    #[arg(long)]
    cartsource_bin: Option<PathBuf>,
    /// Do not run `cargo build --release -p api` first; use the binary next to this one.
    #[arg(long)]
    no_build: bool,
    /// Skip the live (subscription) workloads, the cross-node ones too.
    #[arg(long)]
    skip_live: bool,
    /// Run only these workloads (repeatable): own1, own8, own32, shared, reads, live (both
    /// live workloads), hot (the live one on one cart), cross-node (both live workloads
    /// with the writer on one node and the subscribers on another). For profiling one of
    /// them; the report lists what ran.
    #[arg(long, value_parser = ["own1", "own8", "own32", "shared", "reads", "live", "hot", "cross-node"])]
    only: Vec<String>,
}

impl RunArgs {
    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    /// The live workloads this run measures (`--skip-live` aside).
    fn lives(&self) -> Vec<Live> {
        live_workloads(self.subscribers as usize)
            .into_iter()
            .filter(|l| match l.across_nodes {
                true => self.runs("cross-node"),
                false => self.runs("live") || (l.carts == 1 && self.runs("hot")),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Args)]
struct CrudArgs {
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CrudServer(args)) => crud::serve(args.listen, &args.database_url, args.pool_size).await,
        Some(Command::Run(args)) => run(args).await,
        Some(Command::Projections(args)) => projections::main(args).await.map_err(|e| anyhow::anyhow!(e)),
        Some(Command::Store(args)) => store_bench::main(args).await.map_err(|e| anyhow::anyhow!(e)),
        None => run(cli.run).await,
    }
}

const HTTP_WORKLOADS: [Http; 5] = [
    Http::OwnCarts(1),
    Http::OwnCarts(8),
    Http::OwnCarts(32),
    Http::SharedCart(32),
    Http::Reads(32),
];

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let binaries = Binaries {
        cartsource: driver::locate_cartsource(args.cartsource_bin.as_deref(), !args.no_build)?,
        bench: std::env::current_exe()?,
    };
    let admin = PgPoolOptions::new().max_connections(2).connect(&args.database_url).await?;
    let postgres: String = sqlx::query_scalar("show server_version").fetch_one(&admin).await?;
    let (warmup, measure) = (Duration::from_secs(args.warmup), Duration::from_secs(args.seconds));
    let lives = args.lives();
    let mut results = Results::default();
    for pass in 0..args.passes {
        let order = if pass % 2 == 0 {
            [Kind::Baseline, Kind::Cartsource]
        } else {
            [Kind::Cartsource, Kind::Baseline]
        };
        for kind in order {
            let server = start(kind, &binaries, &admin, &args).await?;
            for workload in HTTP_WORKLOADS.into_iter().filter(|w| args.runs(&w.short_name())) {
                eprintln!("pass {}: {} {workload:?}", pass + 1, kind.name());
                let outcome = workloads::run_http(&server, workload, warmup, measure).await;
                let run = match outcome {
                    Ok(run) => run,
                    Err(e) => {
                        server.stop(&admin).await?;
                        return Err(e);
                    }
                };
                let summary = report::HttpSummary::from(run);
                eprintln!(
                    "  {:.0} ok/s, p99 {:.1} ms, errors {:?}",
                    summary.throughput,
                    summary.p99_ms.unwrap_or(f64::NAN),
                    summary.errors
                );
                results.http.entry((workload, kind)).or_default().push(summary);
            }
            server.stop(&admin).await?;
            if kind == Kind::Cartsource && !args.skip_live {
                for live in lives.iter().copied() {
                    eprintln!("pass {}: cartsource {live:?}", pass + 1);
                    // A fresh server each: its idle RSS is the baseline of the live figures.
                    let server = start(kind, &binaries, &admin, &args).await?;
                    let node_b = match live.across_nodes {
                        true => match server.join(&binaries, Role::Api).await {
                            Ok(node) => Some(node),
                            Err(e) => {
                                server.stop(&admin).await?;
                                return Err(e);
                            }
                        },
                        false => None,
                    };
                    let subscribed = node_b.as_ref().unwrap_or(&server);
                    let outcome = workloads::run_live(&server, subscribed, live, args.writer_rate, measure).await;
                    if let Some(node) = node_b {
                        node.stop(&admin).await?;
                    }
                    server.stop(&admin).await?;
                    let summary = report::LiveSummary::from(outcome?);
                    eprintln!(
                        "  {}/{} acknowledged, {} deliveries, {} missed, {} duplicated, p99 {:.1} ms",
                        summary.acknowledged,
                        summary.sent,
                        summary.deliveries,
                        summary.missed,
                        summary.duplicated,
                        summary.recorded_p99.unwrap_or(f64::NAN)
                    );
                    results.live.entry(live).or_default().push(summary);
                }
            }
        }
    }
    let meta = Meta {
        date: {
            let now = time::OffsetDateTime::now_utc();
            format!("{} {:02}:{:02} UTC", now.date(), now.hour(), now.minute())
        },
        commit: commit(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        postgres,
        passes: args.passes,
        seconds: args.seconds,
        warmup: args.warmup,
        writer_rate: args.writer_rate,
        pool_size: args.pool_size,
    };
    print!("{}", report::markdown(&meta, &results));
    Ok(())
}

/// The live workloads for `n` subscribers: on one node `n` on `n` carts and `n` on one
/// cart; across two nodes the same on `n` carts, and a tenth of `n` on one cart: the hop
/// between nodes (a NOTIFY, then node B reading the log) costs the same whatever the
/// fan-out behind it, which the single-node hot cart measures already, and 1,000 sockets on
/// one cart beside two servers would measure a saturated 2-core machine instead.
fn live_workloads(n: usize) -> [Live; 4] {
    let live = |carts, subscribers, across_nodes| Live {
        carts,
        subscribers,
        across_nodes,
    };
    [live(n, n, false), live(1, n, false), live(n, n, true), live(1, (n / 10).max(1), true)]
}

/// Starts a server on a fresh database and registers the products.
async fn start(kind: Kind, binaries: &Binaries, admin: &PgPool, args: &RunArgs) -> anyhow::Result<Server> {
    let server = Server::start(kind, binaries, admin, &args.database_url, args.pool_size).await?;
    if let Err(e) = workloads::seed(&server).await {
        server.stop(admin).await?;
        return Err(e);
    }
    Ok(server)
}

/// `git rev-parse --short HEAD` of the workspace, `-dirty` with uncommitted changes.
fn commit() -> String {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => format!("{hash}-dirty"),
        Some(hash) => hash,
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lives(args: &[&str]) -> Vec<Live> {
        let cli = Cli::try_parse_from(["cartsource-bench"].iter().chain(args)).expect("parse");
        cli.run.lives()
    }

    #[test]
    fn cross_node_is_in_the_default_run_and_selectable_alone() {
        assert_eq!(lives(&[]).len(), 4);
        let across = lives(&["--only", "cross-node", "--subscribers", "500"]);
        let shape: Vec<_> = across.iter().map(|l| (l.carts, l.subscribers, l.across_nodes)).collect();
        assert_eq!(shape, [(500, 500, true), (1, 50, true)]);
        assert!(lives(&["--only", "live"]).iter().all(|l| !l.across_nodes));
        assert!(lives(&["--only", "own1"]).is_empty());
    }
}

//! `cartsource-bench store` (issue #11): the event store against a *minimal* baseline in the
//! same binary and the same run, on Postgres and on SQLite.
//!
//!     cargo run --release -p bench --features run -- store
//!
//! Postgres: the baseline is `baseline` (the six-column table of the issue, tokio-postgres,
//! prepared statements, one connection per writer), in the same fresh database
//! `cartsource_bench_<random>` as the store's tables (created and dropped here). SQLite: the
//! store's backend against a minimal table in its own WAL file (`sqlite`). The store side
//! always goes through the store's public API as `commands` uses it (`ours`).
//!
//! Each workload runs `--passes` times (default 3) on both sides, the order alternating
//! every pass; the table shows medians over passes with min-max, store/baseline (of the
//! medians, with the range of each pass's own ratio), the target and whether it
//! was met. Progress goes to stderr, the report to stdout.

use std::path::PathBuf;
use std::time::Duration;

use domain::CartEvent;
use serde_json::json;
use uuid::Uuid;

mod baseline;
mod measure;
mod ours;
mod pg;
mod report;
mod sqlite;

use report::Report;

/// The options of `cartsource-bench store`.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Server to benchmark; a fresh database is created on it and dropped at the end.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    url: String,
    /// Passes over every workload, alternating which side goes first.
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Seconds each side writes per pass (W1, W2, the live tail).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seconds of unmeasured writing before each write measurement.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Writer counts for W1.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 8, 32])]
    w1_writers: Vec<usize>,
    /// Writers for W2 and for the live tail.
    #[arg(long, default_value_t = 8)]
    w2_writers: usize,
    /// Loads per pass in W3 (the pass's value is their median).
    #[arg(long, default_value_t = 50)]
    w3_rounds: usize,
    /// The Postgres store's group commit: groups in flight at once (0: off); the store's
    /// default when not given.
    #[arg(long)]
    group_commit_writers: Option<usize>,
    /// Skip the SQLite half.
    #[arg(long)]
    skip_sqlite: bool,
    /// Skip the Postgres half.
    #[arg(long)]
    skip_postgres: bool,
    /// Directory for the SQLite files (a fresh subdirectory is created and removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    sqlite_dir: PathBuf,
    /// Keep the benchmark database and files instead of dropping them.
    #[arg(long)]
    keep: bool,
}

impl StoreArgs {
    fn measure(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    fn warm(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs both halves and prints the report.
pub async fn main(args: StoreArgs) -> Result<(), BoxError> {
    let started = time::OffsetDateTime::now_utc();
    let load_before = load_average();
    let name = format!("cartsource_bench_{}", &Uuid::new_v4().simple().to_string()[..10]);
    let mut header = vec![
        format!(
            "Run {}, commit {}; {}; load average at start {load_before}",
            started.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            commit(),
            hardware()
        ),
        format!(
            "{} pass(es), the order of store and baseline alternating each pass; writes: {} s per side per pass after {} s warm-up; W3: median of {} loads per pass; cells: median (min-max) over passes.",
            args.passes, args.seconds, args.warmup, args.w3_rounds
        ),
    ];
    let mut pg_report = Report::default();
    if !args.skip_postgres {
        header.push(pg::main(&args, &name, &mut pg_report).await?);
    }
    let mut sqlite_report = Report::default();
    if !args.skip_sqlite {
        header.push(sqlite::main(&args, &name, &mut sqlite_report).await?);
    }
    header.push(format!("Load average at the end: {}", load_average()));
    println!();
    for line in header {
        println!("{line}\n");
    }
    if !args.skip_postgres {
        println!("Postgres:\n");
        pg_report.print();
        println!();
    }
    if !args.skip_sqlite {
        println!("SQLite:\n");
        sqlite_report.print();
    }
    Ok(())
}

/// The event every write appends: the command path's most frequent one.
pub(super) fn item_added(n: u64) -> CartEvent {
    let tagged = json!({
        "type": "ItemAddedToCart",
        "data": { "sku": "apple", "name": "Apple", "quantity": n % 5 + 1, "unit_price": 120 }
    });
    serde_json::from_value(tagged).unwrap_or_else(|e| unreachable!("a fixed, valid event: {e}"))
}

/// The ten events of one W2 append.
pub(super) fn ten() -> Vec<CartEvent> {
    (0..10).map(item_added).collect()
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}

fn hardware() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} CPUs ({model}), {mem_gib:.0} GiB RAM")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
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

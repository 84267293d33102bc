//! Several real `cartsource` processes on one fresh Postgres database, each on its own port
//! with its own role, driven only through their HTTP and WebSocket endpoints; every process
//! started is killed when the [`Cluster`] is dropped, also when a test panics (and its log
//! tail is printed then).
//!
//! The binary is the debug `cartsource` next to this test binary (`target/debug/`), built
//! beforehand with `cargo build -p api --bin cartsource` (`CARTSOURCE_BIN` names another).
//! Cargo holds the target directory while tests run, so a test cannot build it itself; a
//! binary older than the sources it is built from fails the test instead of testing old code.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sqlx::PgPool;

pub const SECRET: &str = "cartsource-nodes-test-secret-0123456789abcdef";

/// What a process runs (`--role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

impl Role {
    fn flag(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// One running process.
pub struct Node {
    pub label: String,
    pub role: Role,
    pub base_url: String,
    /// `ws://.../graphql/ws`.
    pub ws_url: String,
    pub pid: u32,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Sends a signal (`STOP`, `CONT`, `TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} ({}) failed", self.pid, self.label);
    }

    /// The process's state as the kernel reports it (`/proc/<pid>/stat`: R, S, T for
    /// stopped, ...), for failure messages.
    pub fn state(&self) -> String {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // pid (comm) state ...: the state follows the last ')'.
        stat.rsplit_once(')')
            .map(|(_, rest)| rest.trim().chars().next().unwrap_or('?').to_string())
            .unwrap_or_else(|| "gone".to_owned())
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for a node")
    }

    /// The process's log so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The processes of one test and their database.
pub struct Cluster {
    pub database_url: String,
    /// A pool of the test's own on the same database, for checks that read tables directly.
    pub db: PgPool,
    pub nodes: Vec<Node>,
    binary: PathBuf,
    dir: PathBuf,
    /// Extra flags for every process started from now on.
    pub extra_args: Vec<String>,
    /// This cluster's turn on the shared server ([`SHARED_SERVER`]); `None` on a server of
    /// the test's own.
    _turn: Option<tokio::sync::SemaphorePermit<'static>>,
}

/// One cluster at a time on the machine's shared Postgres. Four processes hold up to about
/// 70 connections (each node its pool, the store's own 4, the listener's and the
/// notifier's, a worker's lease keeper); two clusters at once went past the server's
/// default `max_connections` of 100, and a test's own pool then timed out ("sorry, too
/// many clients already" in the server's log).
static SHARED_SERVER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

impl Cluster {
    /// A fresh database on the shared server and no process yet, once no other cluster
    /// runs there.
    pub async fn new() -> Cluster {
        let turn = SHARED_SERVER.acquire().await.expect("the semaphore is never closed");
        let mut cluster = Cluster::on(store::testing::postgres().await.url).await;
        cluster._turn = Some(turn);
        cluster
    }

    /// No process yet, on the given database.
    pub async fn on(database_url: String) -> Cluster {
        let binary = binary();
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await
            .expect("connect to the test database");
        Cluster {
            database_url,
            db,
            nodes: Vec::new(),
            binary,
            dir: store::testing::temp_dir("cartsource-nodes"),
            extra_args: Vec::new(),
            _turn: None,
        }
    }

    /// `api` API-only nodes and `workers` workers, each with `extra_args` too. The first worker leads every consumer
    /// before the next starts, so that leadership is not split by a race at start-up.
    pub async fn start(api: usize, workers: usize, extra_args: Vec<String>) -> Cluster {
        Cluster::new().await.with_nodes(api, workers, extra_args).await
    }

    /// Starts the processes of [`Cluster::start`] on this cluster's database.
    pub async fn with_nodes(self, api: usize, workers: usize, extra_args: Vec<String>) -> Cluster {
        let mut cluster = self;
        cluster.extra_args = extra_args;
        for i in 0..workers {
            let node = cluster.spawn(Role::Worker).await;
            if i == 0 {
                let name = cluster.worker_name(node);
                cluster.wait_until_led_by(&name, Duration::from_secs(30)).await;
            }
        }
        for _ in 0..api {
            cluster.spawn(Role::Api).await;
        }
        cluster
    }

    /// Starts one more process and waits until it answers `/healthz`; returns its index.
    pub async fn spawn(&mut self, role: Role) -> usize {
        let label = format!("{}-{}", role.flag(), self.nodes.iter().filter(|n| n.role == role).count() + 1);
        let log = self.dir.join(format!("{label}.log"));
        let data_dir = self.dir.join(&label);
        // One master key for the cluster, as a deployment shares one: each node seals and
        // opens personal data under data keys the others wrapped.
        let master_key = self.dir.join("master_key");
        if !master_key.exists() {
            std::fs::write(&master_key, vault::MasterKey::generate_hex()).expect("write the cluster's master key");
        }
        let mut command = Command::new(&self.binary);
        // Only flags configure the processes: nothing leaks in from the environment.
        for var in ENVIRONMENT {
            command.env_remove(var);
        }
        command
            .args(["serve", "--role", role.flag(), "--listen-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log", "info", "--no-seed", "--jwt-secret", SECRET])
            .args(["--rate-limit-per-second", "100000", "--rate-limit-burst", "100000"])
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--master-key-file")
            .arg(&master_key)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        let pid = child.id();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let file = std::fs::File::create(&log).expect("create a node log");
        let err_file = file.try_clone().expect("clone the log file");
        std::thread::spawn(move || copy_lines(stdout, file, Some(addr_tx)));
        std::thread::spawn(move || copy_lines(stderr, err_file, None));
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{label} did not say where it listens; its log:\n{}", tail(&log, 40));
            }
        };
        let node = Node {
            label,
            role,
            base_url: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/graphql/ws"),
            pid,
            child,
            log,
        };
        self.nodes.push(node);
        let index = self.nodes.len() - 1;
        self.wait_healthy(index).await;
        index
    }

    async fn wait_healthy(&self, index: usize) {
        let node = &self.nodes[index];
        let url = format!("{}/healthz", node.base_url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{} is not healthy: {}", node.label, tail(&node.log, 40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The name a worker process leads under (`<host>-<pid>`).
    pub fn worker_name(&self, index: usize) -> String {
        format!("{}-{}", host(), self.nodes[index].pid)
    }

    /// The node whose worker name is `leader`.
    pub fn node_named(&self, leader: &str) -> Option<usize> {
        self.nodes.iter().position(|n| leader == format!("{}-{}", host(), n.pid))
    }

    /// Every consumer's (name, leader, fencing token, position, generation), read directly.
    pub async fn checkpoints(&self) -> Vec<CheckpointRow> {
        sqlx::query_as(CHECKPOINTS).fetch_all(&self.db).await.expect("read the checkpoints")
    }

    /// Waits until `worker` leads every consumer with a live lease.
    pub async fn wait_until_led_by(&self, worker: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let rows = self.checkpoints().await;
            if !rows.is_empty() && rows.iter().all(|r| r.leader.as_deref() == Some(worker) && r.live) {
                return;
            }
            assert!(Instant::now() < deadline, "{worker} does not lead everything after {within:?}: {rows:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn api_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].role == Role::Api).collect()
    }

    pub fn workers(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].role == Role::Worker).collect()
    }
}

/// Every consumer's checkpoint row as [`CheckpointRow`]. Not the retention job's (#15): its
/// row only holds its lease, and its position never moves.
pub const CHECKPOINTS: &str = "select name, leader, leader_epoch as epoch, position, generation, \
     coalesce(lease_expires_at > now(), false) as live from projection_checkpoints where name <> 'retention' order by name";

/// One checkpoint row as the harness reads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CheckpointRow {
    pub name: String,
    pub leader: Option<String>,
    pub epoch: i64,
    pub position: i64,
    pub generation: i64,
    /// The lease has not expired.
    pub live: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for node in &mut self.nodes {
            // SIGKILL ends a stopped process too.
            let _ = node.child.kill();
            let _ = node.child.wait();
            if panicking {
                eprintln!("---- last lines of {} (pid {}):\n{}", node.label, node.pid, tail(&node.log, 30));
            }
        }
    }
}

/// Variables the binary reads; removed so that only the harness's flags count.
const ENVIRONMENT: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "JWT_SECRET",
    "CARTSOURCE_ENV",
    "CARTSOURCE_DATA_DIR",
    "CARTSOURCE_MASTER_KEY_FILE",
    "CARTSOURCE_PREVIOUS_MASTER_KEY_FILES",
    "CARTSOURCE_ROLE",
    "CARTSOURCE_NO_SEED",
    "LISTEN_ADDR",
    "NATS_URL",
    "RUST_LOG",
    "LOG_FORMAT",
    "LEASE_DURATION",
    "LEASE_HEARTBEAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
];

/// Copies a process's output into its log file; the first line naming the listening
/// address goes to `addr`.
fn copy_lines(from: impl std::io::Read, mut to: std::fs::File, mut addr: Option<std::sync::mpsc::Sender<String>>) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { return };
        let _ = writeln!(to, "{line}");
        if let Some(tx) = &addr {
            if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(found) = log["addr"].as_str() {
                    let _ = tx.send(found.to_owned());
                    addr = None;
                }
            }
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The host part of worker names, found as the binary finds it.
fn host() -> String {
    match std::env::var("HOSTNAME") {
        Ok(h) if !h.is_empty() => h,
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// The `cartsource` binary to start, refusing one older than its sources.
fn binary() -> PathBuf {
    let path = match std::env::var_os("CARTSOURCE_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("this test binary's path");
            // target/debug/deps/nodes-<hash> -> target/debug/cartsource
            let debug = exe.parent().and_then(Path::parent).expect("the target directory");
            debug.join("cartsource")
        }
    };
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!(
            "no cartsource binary at {}: run `cargo build -p api --bin cartsource` first",
            path.display()
        )
    });
    if std::env::var_os("CARTSOURCE_BIN").is_none() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let sources = ["api/src", "projections/src", "store/src", "commands/src", "domain/src", "migrations"];
        let newest = sources.iter().map(|dir| newest_file(&workspace.join(dir))).max().flatten();
        if let Some((changed, file)) = newest {
            assert!(
                changed <= built,
                "{} is older than {}: run `cargo build -p api --bin cartsource` first",
                path.display(),
                file.display()
            );
        }
    }
    path
}

fn newest_file(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_file(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok().map(|t| (t, path))
        };
        if let Some(found) = found {
            if newest.as_ref().is_none_or(|(t, _)| found.0 > *t) {
                newest = Some(found);
            }
        }
    }
    newest
}

//! The servers under test as child processes on fresh Postgres databases: start, wait
//! until ready, read their RSS, stop, drop the database. Only the binaries' CLI and
//! environment are used, never their code.

pub mod http;
pub mod ws;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sqlx::PgPool;

use crate::token::{BENCH_MASTER_KEY, BENCH_SECRET};

/// Which server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Baseline,
    Cartsource,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline",
            Kind::Cartsource => "cartsource",
        }
    }
}

/// Where the two binaries are.
pub struct Binaries {
    pub cartsource: PathBuf,
    /// This binary: it serves the baseline with `crud-server`.
    pub bench: PathBuf,
}

/// A running server on its own database, or (made by [`Server::join`]) another node on
/// the database of one.
pub struct Server {
    pub kind: Kind,
    pub base_url: String,
    pub ws_url: String,
    child: tokio::process::Child,
    pid: u32,
    database: String,
    database_url: String,
    /// Whether [`Server::stop`] drops the database: only the server that created it does.
    owns_database: bool,
    log_path: PathBuf,
    /// Cartsource's data directory (its master key file), removed by [`Server::stop`].
    data_dir: Option<PathBuf>,
}

/// The `CARTSOURCE_ROLE` of a cartsource process (the baseline has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// API, projections and reactors in one process: the single-node setup.
    All,
    /// API only: a second node behind a load balancer.
    Api,
}

impl Role {
    fn env_value(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
        }
    }
}

impl Server {
    /// Creates a database, starts the server on a free 127.0.0.1 port, waits until ready.
    pub async fn start(kind: Kind, binaries: &Binaries, admin: &PgPool, admin_url: &str, pool_size: u32) -> anyhow::Result<Server> {
        let database = format!("cs_bench_{}_{}", kind.name(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        // A name of our own making (letters, digits, `_`): safe to put in DDL.
        sqlx::query(&format!("create database {database}")).execute(admin).await?;
        let database_url = with_database(admin_url, &database)?;
        let spawned = Server::spawn(kind, binaries, &database, &database_url, pool_size, Role::All).await;
        match spawned {
            Ok(mut server) => {
                server.owns_database = true;
                Ok(server)
            }
            Err(e) => {
                drop_database(admin, &database).await?;
                Err(e)
            }
        }
    }

    /// Another cartsource process with `role` on this server's database and a port of its
    /// own, as a second node of one deployment would be. Stop it before this one.
    pub async fn join(&self, binaries: &Binaries, role: Role) -> anyhow::Result<Server> {
        Server::spawn(self.kind, binaries, &self.database, &self.database_url, 0, role).await
    }

    /// Starts a process on `database` (which exists) and waits until it is ready.
    async fn spawn(kind: Kind, binaries: &Binaries, database: &str, database_url: &str, pool_size: u32, role: Role) -> anyhow::Result<Server> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        // One log and data directory per process: several may share the database.
        let process = format!("{database}_{port}");
        let log_path = std::env::temp_dir().join(format!("{process}.log"));
        let log = std::fs::File::create(&log_path)?;
        let data_dir = std::env::temp_dir().join(&process);
        let mut command = match kind {
            Kind::Baseline => {
                let mut c = tokio::process::Command::new(&binaries.bench);
                c.args([
                    "crud-server",
                    "--listen",
                    &listen,
                    "--database-url",
                    database_url,
                    "--pool-size",
                    &pool_size.to_string(),
                ]);
                c
            }
            Kind::Cartsource => {
                // Production mode wants a master key for personal data, never a generated one.
                std::fs::create_dir_all(&data_dir)?;
                let master_key_file = data_dir.join("bench_master_key");
                std::fs::write(&master_key_file, BENCH_MASTER_KEY)?;
                let mut c = tokio::process::Command::new(&binaries.cartsource);
                c.env("DATABASE_URL", database_url)
                    .env("JWT_SECRET", BENCH_SECRET)
                    .env("LISTEN_ADDR", &listen)
                    .env("CARTSOURCE_ENV", "production")
                    .env("CARTSOURCE_ROLE", role.env_value())
                    .env("CARTSOURCE_MASTER_KEY_FILE", master_key_file)
                    .env("CARTSOURCE_DATA_DIR", &data_dir)
                    .env("RUST_LOG", "warn")
                    // One simulated user may send far more than a shop's per-caller limit.
                    .env("RATE_LIMIT_PER_SECOND", "1000000")
                    .env("RATE_LIMIT_BURST", "1000000")
                    .env_remove("NATS_URL");
                c
            }
        };
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("start {}", kind.name()))?;
        let pid = child.id().context("child has no pid")?;
        let mut server = Server {
            kind,
            base_url: format!("http://{listen}"),
            ws_url: format!("ws://{listen}/graphql/ws"),
            child,
            pid,
            database: database.to_owned(),
            database_url: database_url.to_owned(),
            owns_database: false,
            log_path,
            data_dir: (kind == Kind::Cartsource).then_some(data_dir),
        };
        let probe = match kind {
            Kind::Baseline => "/healthz",
            Kind::Cartsource => "/readyz",
        };
        server.wait_ready(probe).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, probe: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status}; its log: {}", self.kind.name(), self.log_path.display());
            }
            if let Ok(r) = client.get(format!("{}{probe}", self.base_url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} not ready within 60 s; its log: {}", self.kind.name(), self.log_path.display())
    }

    /// Resident set size in KiB (VmRSS from /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Kills the process and, if it created its database, drops that.
    pub async fn stop(mut self, admin: &PgPool) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        if self.owns_database {
            drop_database(admin, &self.database).await?;
        }
        let _ = std::fs::remove_file(&self.log_path);
        if let Some(data_dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(data_dir);
        }
        Ok(())
    }
}

async fn drop_database(admin: &PgPool, database: &str) -> anyhow::Result<()> {
    sqlx::query(&format!("drop database if exists {database} with (force)"))
        .execute(admin)
        .await?;
    Ok(())
}

/// `url` with its database (the path) replaced.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").context("database url has no scheme")? + 3;
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The `cartsource` binary: the given one, or a fresh `cargo build --release -p api`
/// next to this binary (so the run measures the current source).
pub fn locate_cartsource(given: Option<&Path>, build: bool) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let here = std::env::current_exe()?;
    let dir = here.parent().context("this binary has no directory")?;
    if build {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("bench has no workspace")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        eprintln!("building cartsource: cargo build --release -p api --bin cartsource");
        let mut command = std::process::Command::new(cargo);
        // `cargo run` describes this package in the environment; some build scripts
        // (ring's) track those variables, so passing them on would rebuild everything.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                command.env_remove(name);
            }
        }
        let status = command
            .current_dir(workspace)
            .args(["build", "--release", "-p", "api", "--bin", "cartsource"])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("building cartsource failed ({status})");
        }
    }
    let path = dir.join("cartsource");
    if !path.exists() {
        bail!(
            "no cartsource binary at {}: build it (cargo build --release -p api) or pass --cartsource-bin",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x").unwrap(),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x").unwrap(), "postgres://h/x");
    }
}

//! Which Postgres server the tests use (see the order in the module header), found once per
//! test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::OnceCell;

use super::{cleanup, free_port, temp_dir};

static SERVER_URL: OnceCell<String> = OnceCell::const_new();
static SWEPT: OnceCell<()> = OnceCell::const_new();

/// The admin URL of the test server: a database on it that exists, and a role that may
/// create databases.
pub(super) async fn url() -> String {
    SERVER_URL.get_or_init(find).await.clone()
}

async fn find() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if url.starts_with("postgres") {
            return url;
        }
    }
    let defaults = libpq_defaults();
    let refused = match accepts(&defaults).await {
        Ok(()) => return defaults,
        Err(e) => e,
    };
    let cluster = match throwaway_cluster().await {
        Ok(url) => return url,
        Err(e) => e,
    };
    if docker_available() {
        return start_container().await;
    }
    panic!(
        "these tests need PostgreSQL, found none:\n\
         1. DATABASE_URL is not set (postgres://user@host:port/db, a role that may CREATE DATABASE);\n\
         2. the libpq defaults {defaults} refused: {refused};\n\
         3. no throwaway cluster could be started from the local PostgreSQL binaries: {cluster};\n\
         4. Docker is not reachable for testcontainers.\n\
         Provide any one of them (on Debian: apt-get install postgresql)."
    )
}

/// `PGHOST`/`PGPORT`/`PGUSER`, else 127.0.0.1:5432 as `postgres`, database `postgres`.
fn libpq_defaults() -> String {
    let var = |name: &str, default: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned());
    let host = var("PGHOST", "127.0.0.1");
    let port = var("PGPORT", "5432");
    let user = var("PGUSER", "postgres");
    if host.starts_with('/') {
        // A socket directory.
        return format!("postgres://{user}@localhost:{port}/postgres?host={host}");
    }
    format!("postgres://{user}@{host}:{port}/postgres")
}

async fn accepts(url: &str) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".to_owned()),
    }
}

/// Once per process, on a server of this machine: drops the test databases of test
/// processes that were killed before they could (see `cleanup`).
pub(super) async fn sweep_once(admin: &mut sqlx::PgConnection, server: &str, prefix: &str) {
    let local = ["@127.0.0.1", "@localhost", "@[::1]"].iter().any(|h| server.contains(h));
    if !local || SWEPT.initialized() {
        return;
    }
    let _ = SWEPT.set(());
    if let Ok(stale) = cleanup::stale_databases(admin, prefix).await {
        for name in stale {
            let _ = cleanup::drop_database(admin, &name).await;
        }
    }
}

/// `initdb` + `pg_ctl start` in a temporary directory (see [`PrivatePostgres`]).
async fn throwaway_cluster() -> Result<String, String> {
    PrivatePostgres::start().map(|pg| pg.url)
}

/// A PostgreSQL server of this test process's own: `initdb` + `pg_ctl start` in a temporary
/// directory, on a free port, trust auth; stopped and removed when the process exits. As
/// root (initdb refuses root) it runs them as the `postgres` user. Tests that stop and start
/// the server (never the shared one) use it directly.
pub struct PrivatePostgres {
    /// The admin URL (database `postgres`).
    pub url: String,
    dir: PathBuf,
    bin: PathBuf,
    as_root: bool,
    options: String,
    port: u16,
}

impl PrivatePostgres {
    pub fn start() -> Result<PrivatePostgres, String> {
        let bin = postgres_bin_dir().ok_or("no initdb and pg_ctl on the PATH or under /usr/lib/postgresql")?;
        let as_root = unsafe { libc::geteuid() } == 0;
        // wal_level and wal senders (PostgreSQL's defaults, spelled out) let `replica` stream
        // from it; initdb's pg_hba.conf already trusts replication from 127.0.0.1.
        let pg = PrivatePostgres::unstarted("cartsource-pg", bin, as_root, "-c wal_level=replica -c max_wal_senders=5")?;
        pg.make_data("initdb", &["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        pg.start_first()?;
        Ok(pg)
    }

    /// A streaming replica of this server (hot standby): `pg_basebackup -R` into a directory of
    /// its own, started on a free port; stopped and removed when the process exits like its
    /// primary. Its `url` names the `postgres` database; `pg_wal_replay_pause()` there holds
    /// it back.
    pub fn replica(&self) -> Result<PrivatePostgres, String> {
        let replica = PrivatePostgres::unstarted("cartsource-pg-replica", self.bin.clone(), self.as_root, "-c hot_standby=on")?;
        let port = self.port.to_string();
        let args = ["-R", "-X", "stream", "--no-sync", "-U", "postgres", "-h", "127.0.0.1", "-p", &port];
        replica.make_data("pg_basebackup", &args)?;
        replica.start_first()?;
        Ok(replica)
    }

    /// A server yet to be made in a new directory, on a free port, with `settings` on top of
    /// the common ones.
    fn unstarted(prefix: &str, bin: PathBuf, as_root: bool, settings: &str) -> Result<PrivatePostgres, String> {
        let dir = temp_dir(prefix);
        if as_root {
            chown_to_postgres(&dir)?;
        }
        let port = free_port();
        Ok(PrivatePostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            options: format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {settings}", dir.display()),
            dir,
            bin,
            as_root,
            port,
        })
    }

    /// Runs `program` (initdb, pg_basebackup) with `args` and `-D <data directory>`.
    fn make_data(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut command = self.command(program);
        command.args(args).arg("-D").arg(self.dir.join("data"));
        run(command, program)
    }

    /// Starts the server for the first time, its stop registered for the process's exit.
    fn start_first(&self) -> Result<(), String> {
        let mut stop = self.command("pg_ctl");
        stop.args(["-m", "immediate", "stop", "-D"]).arg(self.dir.join("data"));
        cleanup::stop_command(stop);
        self.start_again()
    }

    /// Stops the server (fast shutdown: sessions are ended, as in a restart or failover).
    pub fn stop(&self) -> Result<(), String> {
        let mut command = self.command("pg_ctl");
        command.args(["-w", "-t", "30", "-m", "fast", "stop", "-D"]).arg(self.dir.join("data"));
        run(command, "pg_ctl stop")
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let mut command = self.command("pg_ctl");
        command
            .args(["-w", "-t", "30", "-o", &self.options, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("start");
        run(command, "pg_ctl start")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        };
        command.stdin(std::process::Stdio::null());
        command
    }
}

/// Runs a PostgreSQL program to its end; its standard error is the failure's text.
fn run(mut command: Command, what: &str) -> Result<(), String> {
    let program = what.split(' ').next().unwrap_or(what);
    let output = command.output().map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// The directory with `initdb` and `pg_ctl` (and the other PostgreSQL programs): the PATH,
/// else Debian's newest version.
fn postgres_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()))
        // Where a symlink on the PATH points: pg_basebackup (`replica`) lives beside the real one.
        .map(|dir| {
            std::fs::canonicalize(dir.join("pg_ctl"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(dir)
        });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        versions.sort_by_key(|p| {
            let version = p
                .parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok());
            version.unwrap_or(0)
        });
        versions.pop()
    })
}

fn chown_to_postgres(dir: &Path) -> Result<(), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id").args([flag, "postgres"]).output().map_err(|e| format!("id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "running as root and there is no `postgres` user to run initdb as".to_owned())
    };
    std::os::unix::fs::chown(dir, Some(id("-u")?), Some(id("-g")?)).map_err(|e| format!("chown {}: {e}", dir.display()))
}

pub(super) fn docker_available() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

async fn start_container() -> String {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = Postgres::default().start().await.expect("start a Postgres container (Docker reachable?)");
    let port = container.get_host_port_ipv4(5432).await.expect("container port");
    // The container lives as long as the test process.
    std::mem::forget(container);
    format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
}

//! Databases and services for tests (feature `testing`), found the same way on every machine
//! so that a bare `cargo test --workspace` passes with no variables set:
//!
//! * Postgres ([`postgres`]): `DATABASE_URL`; else a server at the libpq defaults
//!   (`PGHOST`/`PGPORT`/`PGUSER`, else 127.0.0.1:5432 as `postgres`) that accepts a
//!   connection; else a throwaway cluster started from the PostgreSQL binaries on this
//!   machine (`initdb` + `pg_ctl` in a temporary directory); else a testcontainers container
//!   when Docker is reachable; else the test fails naming all four. Never skipped.
//! * NATS ([`nats_url`]): `NATS_URL`; else 127.0.0.1:4222; else `nats-server -js` from the
//!   PATH on a free port; else a container; else a clear failure.
//! * Redis ([`redis_url`]): `REDIS_URL`; else 127.0.0.1:6379; else `redis-server` from the
//!   PATH on a free port; else a clear failure.
//! * SQLite ([`sqlite`]) and scratch directories ([`temp_dir`]): under the system temp dir.
//!
//! Everything a test process creates (databases, files, servers) is removed when it exits,
//! also after a failed test (`cleanup`).

mod cleanup;
mod nats;
mod redis;
mod server;

use std::path::PathBuf;

use sqlx::Connection;
use uuid::Uuid;

pub use nats::nats_url;
pub use redis::redis_url;
pub use server::PrivatePostgres;

/// Test databases are named `cstest_<pid>_<hex>`: the pid lets a later run drop the
/// databases of a process that was killed before it could.
const DATABASE_PREFIX: &str = "cstest_";

/// A Postgres database made for one test; dropped when the test process exits.
pub struct TestPostgres {
    pub url: String,
    pub name: String,
}

/// Creates a fresh, empty database on the test server and returns its URL.
pub async fn postgres() -> TestPostgres {
    let server = server::url().await;
    let (prefix, _, query) = split_db(&server);
    let name = format!("{DATABASE_PREFIX}{}_{}", std::process::id(), &Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("connect to test Postgres: {e}"));
    server::sweep_once(&mut admin, &server, DATABASE_PREFIX).await;
    // Registered before it exists, so a failure right after creation still drops it.
    cleanup::database(&server, &name);
    // `name` is made of our own characters; identifiers cannot be bound as parameters.
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create test database: {e}"));
    let _ = admin.close().await;
    TestPostgres {
        url: format!("{prefix}/{name}{query}"),
        name,
    }
}

/// A fresh SQLite database file in a temporary directory removed when the process exits.
pub fn sqlite() -> String {
    let dir = temp_dir("cartsource-test");
    format!("sqlite://{}?mode=rwc", dir.join("events.db").display())
}

/// A new empty directory under the system temp dir, removed when the process exits.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    cleanup::dir(dir.clone());
    dir
}

/// The committed seed-era cart (`tests/fixtures/seed_cart_v1.json`, `ItemAddedToCart`
/// schema v1) as its stream id and the events to append, exactly as they were stored then.
pub fn seed_cart_v1() -> (String, Vec<crate::NewEvent>) {
    let fixture: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/seed_cart_v1.json")).expect("the fixture is JSON");
    let stream = fixture["stream_id"].as_str().expect("stream_id").to_owned();
    let events = fixture["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let version = e["schema_version"].as_i64().expect("schema_version") as i32;
            let metadata = crate::Metadata {
                actor: "seed".into(),
                ..Default::default()
            };
            crate::NewEvent::new(e["type"].as_str().expect("type"), version, e["data"].clone(), metadata)
        })
        .collect();
    (stream, events)
}

/// Splits `postgres://.../name?opts` into (prefix up to the name, name, "?opts").
fn split_db(url: &str) -> (&str, &str, &str) {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    match base[host_start..].rfind('/') {
        Some(i) => (&base[..host_start + i], &base[host_start + i + 1..], query),
        None => (base, "", query),
    }
}

/// A free TCP port on 127.0.0.1 (free when asked: the caller binds it soon after, or uses it
/// as an address where nothing listens).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("find a free port: {e}"))
}

/// The server a test suite was pointed at (`var`), else the one on its default `port` of
/// 127.0.0.1 when it accepts a connection, as a `scheme://` URL; `None`: neither.
fn configured_or_default(var: &str, scheme: &str, port: u16) -> Option<String> {
    if let Ok(url) = std::env::var(var) {
        if !url.is_empty() {
            return Some(url);
        }
    }
    reachable(port, std::time::Duration::from_secs(1)).then(|| format!("{scheme}://127.0.0.1:{port}"))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
fn reachable(port: u16, timeout: std::time::Duration) -> bool {
    std::net::TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), timeout).is_ok()
}

/// Starts `server` (told to listen on 127.0.0.1:`port`, output discarded), to be stopped
/// when the process exits, and waits up to 10 s until it listens.
fn start_listening(mut server: std::process::Command, port: u16) -> Result<(), String> {
    use std::time::{Duration, Instant};
    let name = server.get_program().to_string_lossy().into_owned();
    let child = server
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    cleanup::child(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if reachable(port, Duration::from_millis(200)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{name} did not listen on 127.0.0.1:{port} within 10 s"))
}

#[cfg(test)]
mod tests {
    use super::split_db;

    #[test]
    fn splits_database_urls() {
        assert_eq!(
            split_db("postgres://u@h:5432/db?sslmode=disable"),
            ("postgres://u@h:5432", "db", "?sslmode=disable")
        );
        assert_eq!(split_db("postgres://u@h:5432"), ("postgres://u@h:5432", "", ""));
    }
}

//! Databases for tests (feature `testing`): a fresh Postgres database per call, so tests run
//! in parallel without sharing state, and a fresh SQLite file.
//!
//! Postgres comes from `DATABASE_URL` when set (the server must let that user create
//! databases); otherwise from a testcontainers container when Docker is reachable;
//! otherwise the test fails with a message that says how to provide one. Never skipped.

use std::path::PathBuf;

use tokio::sync::OnceCell;
use uuid::Uuid;

use sqlx::Connection;

/// A Postgres database made for one test. Dropped databases are cleaned up by `.ci/run`
/// (they share the prefix of the `DATABASE_URL` database).
pub struct TestPostgres {
    pub url: String,
    pub name: String,
}

static CONTAINER_URL: OnceCell<String> = OnceCell::const_new();

async fn server_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if url.starts_with("postgres") {
            return url;
        }
    }
    if docker_available() {
        return CONTAINER_URL.get_or_init(start_container).await.clone();
    }
    panic!(
        "these tests need PostgreSQL: set DATABASE_URL=postgres://user@host:port/dbname (a role that may CREATE DATABASE), \
         or make Docker reachable so testcontainers can start one"
    );
}

fn docker_available() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
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

/// Splits `postgres://.../name?opts` into (prefix up to the name, name, "?opts").
fn split_db(url: &str) -> (&str, &str, &str) {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    match base[host_start..].rfind('/') {
        Some(i) => (&base[..host_start + i], &base[host_start + i + 1..], query),
        None => (base, "", query),
    }
}

/// Creates a fresh, empty database on the test server and returns its URL.
pub async fn postgres() -> TestPostgres {
    let server = server_url().await;
    let (prefix, base_name, query) = split_db(&server);
    let base_name = if base_name.is_empty() { "postgres" } else { base_name };
    let name = format!("{}_{}", base_name, &Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("connect to test Postgres: {e}"));
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

/// A fresh SQLite database file in a temporary directory that lives until the process ends.
pub fn sqlite() -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!("cartsource-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    format!("sqlite://{}?mode=rwc", dir.join("events.db").display())
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

//! The two backends' schemas say the same thing: after their migrations, a fresh Postgres
//! database and a fresh SQLite file have the same tables with the same column names, and
//! both migration folders hold the same migration versions. A migration added to one
//! backend only fails here, listing what differs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sqlx::Connection;

type Schema = BTreeMap<String, BTreeSet<String>>;

const SQLX_TABLE: &str = "_sqlx_migrations";

fn schema_of(rows: Vec<(String, String)>) -> Schema {
    let mut schema = Schema::new();
    for (table, column) in rows {
        schema.entry(table).or_default().insert(column);
    }
    schema
}

async fn postgres_schema(url: &str) -> (Schema, Vec<i64>) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to the test database");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select table_name::text, column_name::text from information_schema.columns \
         where table_schema = current_schema() and table_name <> $1",
    )
    .bind(SQLX_TABLE)
    .fetch_all(&mut conn)
    .await
    .expect("postgres columns");
    let applied = sqlx::query_scalar("select version from _sqlx_migrations order by version")
        .fetch_all(&mut conn)
        .await
        .expect("postgres migrations");
    let _ = conn.close().await;
    (schema_of(rows), applied)
}

async fn sqlite_schema(store: &store::SqliteStore) -> (Schema, Vec<i64>) {
    let reader = &store.pool().reader;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select m.name, c.name from sqlite_master m join pragma_table_info(m.name) c \
         where m.type = 'table' and m.name not like 'sqlite_%' and m.name <> ?1",
    )
    .bind(SQLX_TABLE)
    .fetch_all(reader)
    .await
    .expect("sqlite columns");
    let applied = sqlx::query_scalar("select version from _sqlx_migrations order by version")
        .fetch_all(reader)
        .await
        .expect("sqlite migrations");
    (schema_of(rows), applied)
}

/// Versions of the migration files in `migrations/<backend>` (`0001_event_store.sql` -> 1).
fn migration_files(backend: &str) -> Vec<i64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("migrations").join(backend);
    let mut versions: Vec<i64> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .map(|name| {
            let version = name.split('_').next().unwrap_or_default();
            version
                .parse()
                .unwrap_or_else(|_| panic!("{backend}/{name}: a migration file starts with its version and '_'"))
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// Every way the two schemas differ, one line each.
fn differences(postgres: &Schema, sqlite: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    for table in postgres.keys().filter(|t| !sqlite.contains_key(*t)) {
        found.push(format!("table {table} exists only in Postgres"));
    }
    for table in sqlite.keys().filter(|t| !postgres.contains_key(*t)) {
        found.push(format!("table {table} exists only in SQLite"));
    }
    for (table, pg_columns) in postgres {
        let Some(sqlite_columns) = sqlite.get(table) else { continue };
        for column in pg_columns.difference(sqlite_columns) {
            found.push(format!("column {table}.{column} exists only in Postgres"));
        }
        for column in sqlite_columns.difference(pg_columns) {
            found.push(format!("column {table}.{column} exists only in SQLite"));
        }
    }
    found
}

#[tokio::test]
async fn postgres_and_sqlite_schemas_have_the_same_tables_columns_and_migrations() {
    let pg = store::testing::postgres().await;
    store::PgStore::connect(&pg.url)
        .await
        .unwrap_or_else(|e| panic!("open the Postgres store: {e:?}"));
    let sqlite = store::SqliteStore::connect(&store::testing::sqlite())
        .await
        .unwrap_or_else(|e| panic!("open the SQLite store: {e:?}"));

    let (pg_schema, pg_applied) = postgres_schema(&pg.url).await;
    let (sqlite_schema, sqlite_applied) = sqlite_schema(&sqlite).await;
    assert!(!pg_schema.is_empty() && !sqlite_schema.is_empty(), "migrations created tables");

    let mut problems = differences(&pg_schema, &sqlite_schema);
    let (pg_files, sqlite_files) = (migration_files("postgres"), migration_files("sqlite"));
    if pg_files != sqlite_files {
        problems.push(format!(
            "migration versions differ: migrations/postgres has {pg_files:?}, migrations/sqlite has {sqlite_files:?}"
        ));
    }
    if pg_applied != pg_files {
        problems.push(format!("Postgres applied {pg_applied:?}, migrations/postgres has {pg_files:?}"));
    }
    if sqlite_applied != sqlite_files {
        problems.push(format!("SQLite applied {sqlite_applied:?}, migrations/sqlite has {sqlite_files:?}"));
    }
    assert!(problems.is_empty(), "the backends' schemas differ:\n  {}", problems.join("\n  "));
}

#[test]
fn differences_name_each_missing_table_and_column() {
    let pg = schema_of(vec![
        ("events".into(), "position".into()),
        ("events".into(), "xid".into()),
        ("only_pg".into(), "a".into()),
    ]);
    let lite = schema_of(vec![
        ("events".into(), "position".into()),
        ("events".into(), "rowid2".into()),
        ("only_lite".into(), "b".into()),
    ]);
    assert_eq!(
        differences(&pg, &lite),
        vec![
            "table only_pg exists only in Postgres",
            "table only_lite exists only in SQLite",
            "column events.xid exists only in Postgres",
            "column events.rowid2 exists only in SQLite",
        ]
    );
    assert!(differences(&pg, &pg).is_empty());
}

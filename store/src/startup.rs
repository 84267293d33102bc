//! Why a store could not be opened, in one line with the cause and the fix, for the few
//! failures every operator meets on day one: nothing listening, a wrong password or user,
//! a missing database, a user that may not create tables. Everything else keeps sqlx's words.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use crate::error::StoreError;

/// One connection, within `timeout`, before the pool is built: the pool would retry a refused
/// connection until its acquire timeout and then say only "pool timed out".
/// `setting` names where the URL came from (`DATABASE_URL`, `READ_DATABASE_URL`), for the fix.
pub(crate) async fn check_postgres(options: &PgConnectOptions, timeout: Duration, setting: &'static str) -> Result<(), StoreError> {
    let target = Target::of(options, setting);
    match tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(StoreError::Unavailable(target.explain(&e))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "PostgreSQL at {} did not answer within {} s: check the host and port in {} and that no firewall drops the connection",
            target.address,
            timeout.as_secs_f32(),
            target.setting
        ))),
    }
}

/// A failed migration, explained when it is a missing privilege.
pub(crate) fn migration_failed(options: &PgConnectOptions, error: sqlx::migrate::MigrateError) -> StoreError {
    if let sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db)) = &error {
        if db.code().as_deref() == Some("42501") {
            let target = Target::of(options, "DATABASE_URL");
            return StoreError::Unavailable(format!(
                "user {:?} may not create tables in database {:?} ({}): run `GRANT CREATE ON SCHEMA public TO \"{}\"` as the database owner, or connect as the owner",
                target.user, target.database, db.message(), target.user
            ));
        }
    }
    StoreError::Migration(error)
}

struct Target {
    address: String,
    user: String,
    database: String,
    setting: &'static str,
}

impl Target {
    fn of(options: &PgConnectOptions, setting: &'static str) -> Target {
        Target {
            address: format!("{}:{}", options.get_host(), options.get_port()),
            user: options.get_username().to_owned(),
            database: options.get_database().unwrap_or(options.get_username()).to_owned(),
            setting,
        }
    }

    fn explain(&self, error: &sqlx::Error) -> String {
        let Target {
            address,
            user,
            database,
            setting,
        } = self;
        match error {
            sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("nothing accepts connections at {address} (connection refused): start PostgreSQL there or fix the host and port in {setting}")
            }
            sqlx::Error::Io(e) => format!("cannot reach PostgreSQL at {address} ({e}): check the host and port in {setting}"),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01") => format!("PostgreSQL at {address} refused the password of user {user:?}: fix the user or password in {setting}"),
                Some("28000") => format!(
                    "PostgreSQL at {address} refused user {user:?} ({}): create the role or fix the user in {setting} (and pg_hba.conf)",
                    db.message()
                ),
                Some("3D000") => {
                    format!("database {database:?} does not exist at {address}: create it (`createdb {database}`) or fix the name in {setting}")
                }
                _ => format!("PostgreSQL at {address} refused the connection: {}", db.message()),
            },
            sqlx::Error::Tls(e) => format!("TLS with PostgreSQL at {address} failed ({e}): check sslmode in {setting}"),
            other => format!("cannot connect to PostgreSQL at {address}: {other}"),
        }
    }
}

//! [`KeyStore`] on PostgreSQL (the table: migration 0005).

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use crate::error::StoreError;
use crate::event::{AppendOutcome, AppendRequest};
use crate::keys::{DataKey, KeyStore};

type Row = (String, Uuid, Vec<u8>, String);

fn key((subject, key_id, wrapped, master_key): Row) -> DataKey {
    DataKey {
        subject,
        key_id,
        wrapped,
        master_key,
    }
}

pub(super) const DELETE: &str = "delete from data_keys where subject = $1";

#[async_trait]
impl KeyStore for PgStore {
    async fn data_key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<Row> = sqlx::query_as("select subject, key_id, wrapped, master_key from data_keys where subject = $1")
            .bind(subject)
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(row.map(key))
    }

    async fn data_keys(&self, subjects: &[String]) -> Result<Vec<DataKey>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as("select subject, key_id, wrapped, master_key from data_keys where subject = any($1)")
            .bind(subjects)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(rows.into_iter().map(key).collect())
    }

    async fn insert_data_key(&self, new: DataKey) -> Result<DataKey, StoreError> {
        // `on conflict do nothing` returns no row when another insert won: read the winner.
        let inserted: Option<Row> = sqlx::query_as(
            "insert into data_keys (subject, key_id, wrapped, master_key) values ($1, $2, $3, $4)
             on conflict (subject) do nothing
             returning subject, key_id, wrapped, master_key",
        )
        .bind(&new.subject)
        .bind(new.key_id)
        .bind(&new.wrapped)
        .bind(&new.master_key)
        .fetch_optional(&self.inner.pool)
        .await?;
        match inserted {
            Some(row) => Ok(key(row)),
            None => self
                .data_key(&new.subject)
                .await?
                .ok_or_else(|| StoreError::InvalidRequest("the data key was shredded while it was made; try again".into())),
        }
    }

    async fn shred(&self, subject: &str, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let outcome = self.append_transaction(&request, Some(subject)).await?;
        if !outcome.replayed {
            self.inner.wakeups.committed(outcome.last_position());
        }
        Ok(outcome)
    }

    async fn keys_not_wrapped_by(&self, master_key: &str, limit: usize) -> Result<Vec<DataKey>, StoreError> {
        let rows: Vec<Row> =
            sqlx::query_as("select subject, key_id, wrapped, master_key from data_keys where master_key <> $1 order by subject limit $2")
                .bind(master_key)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.inner.pool)
                .await?;
        Ok(rows.into_iter().map(key).collect())
    }

    async fn rewrap(&self, k: &DataKey) -> Result<bool, StoreError> {
        let done = sqlx::query("update data_keys set wrapped = $2, master_key = $3 where key_id = $1")
            .bind(k.key_id)
            .bind(&k.wrapped)
            .bind(&k.master_key)
            .execute(&self.inner.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

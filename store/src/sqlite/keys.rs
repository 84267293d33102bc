//! [`KeyStore`] on SQLite (the table: migration 0005). Writes go through the one writer.

use async_trait::async_trait;

use super::SqliteStore;
use crate::error::StoreError;
use crate::event::{AppendOutcome, AppendRequest};
use crate::keys::{DataKey, KeyStore};

type Row = (String, String, Vec<u8>, String);

fn key((subject, key_id, wrapped, master_key): Row) -> Result<DataKey, StoreError> {
    Ok(DataKey {
        subject,
        key_id: key_id.parse().map_err(|e| StoreError::Corrupt(format!("data key id {key_id:?}: {e}")))?,
        wrapped,
        master_key,
    })
}

const SELECT: &str = "select subject, key_id, wrapped, master_key from data_keys where subject = $1";

#[async_trait]
impl KeyStore for SqliteStore {
    async fn data_key(&self, subject: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<Row> = sqlx::query_as(SELECT).bind(subject).fetch_optional(&self.pools.reader).await?;
        row.map(key).transpose()
    }

    async fn data_keys(&self, subjects: &[String]) -> Result<Vec<DataKey>, StoreError> {
        let subjects = serde_json::to_string(subjects).map_err(|e| StoreError::InvalidRequest(e.to_string()))?;
        let rows: Vec<Row> =
            sqlx::query_as("select subject, key_id, wrapped, master_key from data_keys where subject in (select value from json_each($1))")
                .bind(subjects)
                .fetch_all(&self.pools.reader)
                .await?;
        rows.into_iter().map(key).collect()
    }

    async fn insert_data_key(&self, new: DataKey) -> Result<DataKey, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("insert into data_keys (subject, key_id, wrapped, master_key) values ($1, $2, $3, $4) on conflict (subject) do nothing")
            .bind(&new.subject)
            .bind(new.key_id.to_string())
            .bind(&new.wrapped)
            .bind(&new.master_key)
            .execute(&mut *tx)
            .await?;
        let row: Row = sqlx::query_as(SELECT).bind(&new.subject).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        key(row)
    }

    async fn shred(&self, subject: &str, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let mut tx = self.begin().await?;
        sqlx::query("delete from data_keys where subject = $1")
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        let outcome = self.write(&mut tx, &request).await?;
        tx.commit().await?;
        if !outcome.replayed {
            self.doorbell.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(outcome)
    }

    async fn keys_not_wrapped_by(&self, master_key: &str, limit: usize) -> Result<Vec<DataKey>, StoreError> {
        let rows: Vec<Row> =
            sqlx::query_as("select subject, key_id, wrapped, master_key from data_keys where master_key <> $1 order by subject limit $2")
                .bind(master_key)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pools.reader)
                .await?;
        rows.into_iter().map(key).collect()
    }

    async fn rewrap(&self, k: &DataKey) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("update data_keys set wrapped = $2, master_key = $3 where key_id = $1")
            .bind(k.key_id.to_string())
            .bind(&k.wrapped)
            .bind(&k.master_key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

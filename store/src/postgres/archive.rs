//! Archiving a stream and truncating one behind a snapshot (#15). The tables and why they
//! are tables are in `migrations/postgres/0006_archive.sql`.
//!
//! Both run in one short transaction that first takes `share row exclusive` on `events`.
//! That lock conflicts with the `row exclusive` every append's insert holds until its
//! transaction ends, and nothing else (feed and stream reads take `access share`): it waits
//! for the appends in flight, holds new ones back for the few milliseconds of one stream's
//! move, and guarantees that no append read the stream before the tombstone committed and
//! writes after the move (an append's statement takes its snapshot after its table lock).
//! Without it an `Exact(n)` append that had already seen version n could write n + 1 to a
//! stream that no longer exists. (A `NoStream` append needs no lock: the stream's marker
//! takes version 1's key in the same transaction as the move, see [`MOVE_SQL`].)
//! `lock_timeout` bounds the wait; a timed-out archive is transient and tried again by its
//! caller.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{to_i64, to_u64, PgStore};
use crate::error::StoreError;
use crate::event::{
    category_of, ArchiveOutcome, ArchiveReason, ArchivedStream, ExpectedVersion, Position, StreamArchivedData, ARCHIVE_LOG_STREAM, STREAM_ARCHIVED,
};

/// The longest archiving waits for appends in flight (and holds new ones back).
const LOCK_TIMEOUT: &str = "set local lock_timeout = '2s'";
const LOCK_EVENTS: &str = "lock table events in share row exclusive mode";

/// Moves the events of one stream with `version <= $2` from `events` to `archived_events`,
/// and leaves the stream's marker in place of its version 1 when that is what moves: the
/// same row at the negated position (so no feed, which reads positions above a checkpoint,
/// ever meets it), with the same event id (still taken), and without data. The marker keeps
/// the stream's key `(stream_id, 1)` taken, so an append expecting a new stream is refused
/// by the constraint, with no read of `stream_archives` (migration 0008). Stream reads and
/// the checks of `Exact(n)` skip it by `position > 0`.
const MOVE_SQL: &str = "with moved as (
        delete from events where stream_id = $1 and version <= $2 and position > 0
        returning position, event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at),
    archived as (
        insert into archived_events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at)
        select * from moved
        returning 1),
    marker as (
        insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at)
        select -position, event_id, stream_id, category, 1, '$archived', 0, 'null', '{}', recorded_at from moved where version = 1)
    select count(*) from archived";

/// Whether the stream has an archive row: `(whole, archived_through)`.
pub(super) async fn archive_state<'e, E: PgExecutor<'e>>(executor: E, stream_id: &str) -> Result<Option<(bool, u64)>, StoreError> {
    let row: Option<(bool, i64)> = sqlx::query_as("select whole, archived_through from stream_archives where stream_id = $1")
        .bind(stream_id)
        .fetch_optional(executor)
        .await?;
    row.map(|(whole, through)| Ok((whole, to_u64(through, "archived version")?))).transpose()
}

pub(super) async fn tombstone<'e, E: PgExecutor<'e>>(executor: E, stream_id: &str) -> Result<Option<ArchivedStream>, StoreError> {
    let row: Option<(i64, String, String, OffsetDateTime)> =
        sqlx::query_as("select archived_through, reason, actor, archived_at from stream_archives where stream_id = $1 and whole")
            .bind(stream_id)
            .fetch_optional(executor)
            .await?;
    row.map(|(version, reason, actor, archived_at)| {
        Ok(ArchivedStream {
            stream_id: stream_id.to_owned(),
            version: to_u64(version, "archived version")?,
            reason,
            actor,
            archived_at,
        })
    })
    .transpose()
}

async fn hot_version(conn: &mut PgConnection, stream_id: &str) -> Result<u64, StoreError> {
    let version: i64 = sqlx::query_scalar("select coalesce(max(version), 0) from events where stream_id = $1 and position > 0")
        .bind(stream_id)
        .fetch_one(&mut *conn)
        .await?;
    to_u64(version, "stream version")
}

/// [`MOVE_SQL`]: how many events moved.
async fn move_events(conn: &mut PgConnection, stream_id: &str, through: u64) -> Result<u64, StoreError> {
    let moved: i64 = sqlx::query_scalar(MOVE_SQL)
        .bind(stream_id)
        .bind(to_i64(through))
        .fetch_one(&mut *conn)
        .await?;
    to_u64(moved, "moved events")
}

async fn lock_events(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query(LOCK_TIMEOUT).execute(&mut *conn).await?;
    sqlx::query(LOCK_EVENTS).execute(&mut *conn).await?;
    Ok(())
}

impl PgStore {
    pub(super) async fn archive(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        reason: ArchiveReason,
        actor: &str,
    ) -> Result<ArchiveOutcome, StoreError> {
        if stream_id == ARCHIVE_LOG_STREAM {
            return Err(StoreError::InvalidRequest("the archive log itself cannot be archived".into()));
        }
        let mut tx = self.inner.pool.begin().await?;
        lock_events(&mut tx).await?;
        let state = archive_state(&mut *tx, stream_id).await?;
        if let Some((true, version)) = state {
            tx.rollback().await?;
            return Ok(ArchiveOutcome {
                version,
                moved: 0,
                already: true,
                position: None,
            });
        }
        let version = hot_version(&mut tx, stream_id).await?;
        if version == 0 {
            return Err(StoreError::InvalidRequest(format!("stream {stream_id} has no events to archive")));
        }
        if !expected.is_met_by(version) {
            return Err(StoreError::Conflict {
                stream: stream_id.to_owned(),
                expected,
                actual: version,
            });
        }
        let moved = move_events(&mut tx, stream_id, version).await?;
        sqlx::query(
            "insert into stream_archives (stream_id, whole, archived_through, reason, actor) values ($1, true, $2, $3, $4)
             on conflict (stream_id) do update
                set whole = true, archived_through = excluded.archived_through, reason = excluded.reason,
                    actor = excluded.actor, archived_at = now()",
        )
        .bind(stream_id)
        .bind(to_i64(version))
        .bind(reason.as_str())
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        let (data, metadata) = StreamArchivedData {
            stream_id: stream_id.to_owned(),
            version,
            reason,
        }
        .record(actor)?;
        // The first event this transaction writes: ordinal 1 (see 0001). The table lock
        // makes max(version) of the log safe to use.
        let position: i64 = sqlx::query_scalar(
            "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
             select (pg_current_xact_id()::text::bigint << 20) + 1, $1, $2, $3,
                    coalesce((select max(version) from events where stream_id = $2), 0) + 1, $4, 1, $5::text::json, $6::text::json
             returning position",
        )
        .bind(Uuid::new_v4())
        .bind(ARCHIVE_LOG_STREAM)
        .bind(category_of(ARCHIVE_LOG_STREAM))
        .bind(STREAM_ARCHIVED)
        .bind(data)
        .bind(metadata)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ArchiveOutcome {
            version,
            moved,
            already: false,
            position: Some(Position(to_u64(position, "position")?)),
        })
    }

    pub(super) async fn truncate(&self, stream_id: &str, through: u64) -> Result<u64, StoreError> {
        let mut tx = self.inner.pool.begin().await?;
        lock_events(&mut tx).await?;
        if let Some((true, version)) = archive_state(&mut *tx, stream_id).await? {
            return Err(StoreError::StreamArchived {
                stream: stream_id.to_owned(),
                version,
            });
        }
        let snapshot: Option<i64> = sqlx::query_scalar("select max(version) from snapshots where stream_id = $1")
            .bind(stream_id)
            .fetch_one(&mut *tx)
            .await?;
        if snapshot.is_none_or(|v| v < to_i64(through)) {
            return Err(StoreError::InvalidRequest(format!(
                "stream {stream_id} has no snapshot at version {through} or later: truncate only behind one"
            )));
        }
        // The last event stays: `Exact(last)` appends check that it exists.
        let through = through.min(hot_version(&mut tx, stream_id).await?.saturating_sub(1));
        if through == 0 {
            return Ok(0);
        }
        let moved = move_events(&mut tx, stream_id, through).await?;
        sqlx::query(
            "insert into stream_archives (stream_id, whole, archived_through, reason, actor) values ($1, false, $2, 'TRUNCATION', 'store')
             on conflict (stream_id) do update
                set archived_through = greatest(stream_archives.archived_through, excluded.archived_through), archived_at = now()
              where not stream_archives.whole",
        )
        .bind(stream_id)
        .bind(to_i64(through))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(moved)
    }
}

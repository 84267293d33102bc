//! Archiving and truncation on SQLite (#15): the Postgres edition (`postgres/archive.rs`)
//! explains them. Here both run in one write transaction on the one writer connection, so
//! no append can interleave: no table lock is needed.

use sqlx::SqliteConnection;
use uuid::Uuid;

use super::rows::{from_i64, parse_timestamp, to_i64};
use crate::error::StoreError;
use crate::event::{
    category_of, ArchiveOutcome, ArchiveReason, ArchivedStream, ExpectedVersion, Position, StreamArchivedData, ARCHIVE_LOG_STREAM, STREAM_ARCHIVED,
};

const COPY_SQL: &str =
    "insert into archived_events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at) \
     select position, event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at \
       from events where stream_id = ?1 and version <= ?2";
const DELETE_SQL: &str = "delete from events where stream_id = ?1 and version <= ?2";

/// Whether the stream has an archive row: `(whole, archived_through)`.
pub(super) async fn archive_state(conn: &mut SqliteConnection, stream_id: &str) -> Result<Option<(bool, u64)>, StoreError> {
    let row: Option<(bool, i64)> = sqlx::query_as("select whole, archived_through from stream_archives where stream_id = ?1")
        .bind(stream_id)
        .fetch_optional(conn)
        .await?;
    row.map(|(whole, through)| Ok((whole, from_i64(through, "archived version")?)))
        .transpose()
}

pub(super) async fn tombstone(conn: &mut SqliteConnection, stream_id: &str) -> Result<Option<ArchivedStream>, StoreError> {
    let row: Option<(i64, String, String, String)> =
        sqlx::query_as("select archived_through, reason, actor, archived_at from stream_archives where stream_id = ?1 and whole")
            .bind(stream_id)
            .fetch_optional(conn)
            .await?;
    row.map(|(version, reason, actor, archived_at)| {
        Ok(ArchivedStream {
            stream_id: stream_id.to_owned(),
            version: from_i64(version, "archived version")?,
            reason,
            actor,
            archived_at: parse_timestamp(&archived_at)?,
        })
    })
    .transpose()
}

async fn hot_version(conn: &mut SqliteConnection, stream_id: &str) -> Result<u64, StoreError> {
    let version: i64 = sqlx::query_scalar("select coalesce(max(version), 0) from events where stream_id = ?1")
        .bind(stream_id)
        .fetch_one(conn)
        .await?;
    from_i64(version, "stream version")
}

/// Moves the stream's events at versions `<= through` to the archive; how many moved.
async fn move_events(conn: &mut SqliteConnection, stream_id: &str, through: u64) -> Result<u64, StoreError> {
    let through = to_i64(through, "version")?;
    let copied = sqlx::query(COPY_SQL)
        .bind(stream_id)
        .bind(through)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let deleted = sqlx::query(DELETE_SQL)
        .bind(stream_id)
        .bind(through)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if copied != deleted {
        return Err(StoreError::Corrupt(format!(
            "archiving {stream_id}: copied {copied} events but deleted {deleted}"
        )));
    }
    Ok(deleted)
}

/// Inside the caller's write transaction, which it commits.
pub(super) async fn archive(
    conn: &mut SqliteConnection,
    stream_id: &str,
    expected: ExpectedVersion,
    reason: ArchiveReason,
    actor: &str,
    recorded_at: &str,
) -> Result<ArchiveOutcome, StoreError> {
    if stream_id == ARCHIVE_LOG_STREAM {
        return Err(StoreError::InvalidRequest("the archive log itself cannot be archived".into()));
    }
    if let Some((true, version)) = archive_state(&mut *conn, stream_id).await? {
        return Ok(ArchiveOutcome {
            version,
            moved: 0,
            already: true,
            position: None,
        });
    }
    let version = hot_version(&mut *conn, stream_id).await?;
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
    let moved = move_events(&mut *conn, stream_id, version).await?;
    sqlx::query(
        "insert into stream_archives (stream_id, whole, archived_through, reason, actor) values (?1, 1, ?2, ?3, ?4) \
         on conflict (stream_id) do update set whole = 1, archived_through = excluded.archived_through, reason = excluded.reason, \
         actor = excluded.actor, archived_at = excluded.archived_at",
    )
    .bind(stream_id)
    .bind(to_i64(version, "version")?)
    .bind(reason.as_str())
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    let (data, metadata) = StreamArchivedData {
        stream_id: stream_id.to_owned(),
        version,
        reason,
    }
    .record(actor)?;
    let log_version = hot_version(&mut *conn, ARCHIVE_LOG_STREAM).await? + 1;
    let position: i64 = sqlx::query_scalar(
        "insert into events (event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at) \
         values (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8) returning position",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(ARCHIVE_LOG_STREAM)
    .bind(category_of(ARCHIVE_LOG_STREAM))
    .bind(to_i64(log_version, "version")?)
    .bind(STREAM_ARCHIVED)
    .bind(data)
    .bind(metadata)
    .bind(recorded_at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(ArchiveOutcome {
        version,
        moved,
        already: false,
        position: Some(Position(from_i64(position, "position")?)),
    })
}

/// Inside the caller's write transaction, which it commits.
pub(super) async fn truncate(conn: &mut SqliteConnection, stream_id: &str, through: u64) -> Result<u64, StoreError> {
    if let Some((true, version)) = archive_state(&mut *conn, stream_id).await? {
        return Err(StoreError::StreamArchived {
            stream: stream_id.to_owned(),
            version,
        });
    }
    let snapshot: Option<i64> = sqlx::query_scalar("select max(version) from snapshots where stream_id = ?1")
        .bind(stream_id)
        .fetch_one(&mut *conn)
        .await?;
    if snapshot.is_none_or(|v| v < to_i64(through, "version").unwrap_or(i64::MAX)) {
        return Err(StoreError::InvalidRequest(format!(
            "stream {stream_id} has no snapshot at version {through} or later: truncate only behind one"
        )));
    }
    // The last event stays, as on Postgres.
    let through = through.min(hot_version(&mut *conn, stream_id).await?.saturating_sub(1));
    if through == 0 {
        return Ok(0);
    }
    let moved = move_events(&mut *conn, stream_id, through).await?;
    sqlx::query(
        "insert into stream_archives (stream_id, whole, archived_through, reason, actor) values (?1, 0, ?2, 'TRUNCATION', 'store') \
         on conflict (stream_id) do update set archived_through = max(stream_archives.archived_through, excluded.archived_through), \
         archived_at = excluded.archived_at where not stream_archives.whole",
    )
    .bind(stream_id)
    .bind(to_i64(through, "version")?)
    .execute(&mut *conn)
    .await?;
    Ok(moved)
}

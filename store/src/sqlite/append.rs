//! Appending to SQLite, on the one writer connection (see the module above for why one
//! writer makes this safe without retries).
//!
//! * The command path's append (one stream, no idempotency key, at most [`INSERT_ROWS`]
//!   events) is ONE statement: it checks the expectation and the tombstone and takes
//!   `recorded_at` as it inserts, like the Postgres append. Alone it runs in autocommit (on
//!   SQLite every statement is a round trip to the connection's thread; BEGIN, a read, the
//!   insert and COMMIT were four); while another is being written it joins the next group
//!   (`group_commit`), whose transaction runs each append's statement in turn.
//! * Anything else is one transaction: every expectation read and checked first, so that a
//!   failing one writes nothing, then each stream's events inserted by the same statement,
//!   [`INSERT_ROWS`] rows at a time.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::rows::{format_timestamp, from_i64, parse_outcome, to_i64};
use super::{is_unique_violation, SqliteStore};
use crate::error::StoreError;
use crate::event::{category_of, AppendOutcome, AppendRequest, NewEvent, Position, StreamAppend, StreamOutcome};

impl SqliteStore {
    /// The append of `request` in one statement when it is the command path's kind (see the
    /// module), else in a transaction.
    pub(super) async fn append_request(&self, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        match request.streams.as_slice() {
            [stream] if request.idempotency.is_none() && stream.events.len() <= INSERT_ROWS => self.append_grouped(stream).await,
            _ => {
                let mut tx = self.begin().await?;
                let outcome = self.write(&mut tx, request).await?;
                tx.commit().await?;
                Ok(outcome)
            }
        }
    }

    /// One stream's append, at most [`INSERT_ROWS`] events, in one statement in autocommit.
    pub(super) async fn append_stream(&self, stream: &StreamAppend) -> Result<AppendOutcome, StoreError> {
        let mut conn = self.pools.writer.acquire().await?;
        append_stream_on(&mut conn, stream, &format_timestamp(OffsetDateTime::now_utc())?).await
    }

    /// The append proper, on a connection that holds the write lock (or will take it at
    /// its first write, with no other writer in this process).
    pub(super) async fn write(&self, conn: &mut SqliteConnection, request: &AppendRequest) -> Result<AppendOutcome, StoreError> {
        if let Some(idempotency) = &request.idempotency {
            let stored: Option<(String, String)> = sqlx::query_as("select fingerprint, outcome from idempotency_keys where actor = ?1 and key = ?2")
                .bind(&idempotency.actor)
                .bind(&idempotency.key)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some((fingerprint, outcome)) = stored {
                if fingerprint != idempotency.fingerprint {
                    return Err(StoreError::IdempotencyKeyReused {
                        actor: idempotency.actor.clone(),
                        key: idempotency.key.clone(),
                    });
                }
                let mut outcome = parse_outcome(&outcome)?;
                outcome.replayed = true;
                return Ok(outcome);
            }
        }

        // Every expectation first, so a failing one writes nothing at all. Read inside the
        // write lock: with one writer, nothing can archive a stream or append to it between
        // this read and the inserts.
        let mut starts = Vec::with_capacity(request.streams.len());
        for stream in &request.streams {
            starts.push(checked_version(&mut *conn, stream).await?);
        }

        let now = format_timestamp(OffsetDateTime::now_utc())?;
        let mut outcome = AppendOutcome {
            streams: Vec::with_capacity(request.streams.len()),
            positions: Vec::with_capacity(request.event_count()),
            replayed: false,
        };
        for (stream, start) in request.streams.iter().zip(starts) {
            let mut version = start;
            for chunk in stream.events.chunks(INSERT_ROWS) {
                let Some(rows) = insert(&mut *conn, stream, chunk, to_i64(version, "version")?, &now).await? else {
                    return Err(StoreError::Corrupt(format!("stream {} changed under the write lock", stream.stream_id)));
                };
                version += rows.len() as u64;
                outcome.positions.extend(positions(rows)?);
            }
            outcome.streams.push(StreamOutcome {
                stream_id: stream.stream_id.clone(),
                first_version: start + 1,
                last_version: version,
            });
        }

        if let Some(idempotency) = &request.idempotency {
            let stored = serde_json::to_string(&outcome).map_err(|e| StoreError::Corrupt(format!("cannot encode an append outcome: {e}")))?;
            sqlx::query("insert into idempotency_keys (actor, key, fingerprint, outcome, created_at) values (?1, ?2, ?3, ?4, ?5)")
                .bind(&idempotency.actor)
                .bind(&idempotency.key)
                .bind(&idempotency.fingerprint)
                .bind(stored)
                .bind(&now)
                .execute(&mut *conn)
                .await?;
        }
        Ok(outcome)
    }
}

/// Inserts `events` of `stream` after version `expected` (-1: whatever it is) in one
/// statement ([`checked_insert_sql`]): (position, version) per event, in event order, or
/// `None` when the stream was not at `expected` or was archived whole.
async fn insert(
    conn: &mut SqliteConnection,
    stream: &StreamAppend,
    events: &[NewEvent],
    expected: i64,
    now: &str,
) -> Result<Option<Vec<(i64, i64)>>, StoreError> {
    let mut statement = sqlx::query_as(checked_insert_sql(events.len()))
        .bind(&stream.stream_id)
        .bind(category_of(&stream.stream_id))
        .bind(now)
        .bind(expected);
    for event in events {
        let (data, metadata) = event.json_text()?;
        statement = statement
            .bind(event.event_id.to_string())
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(data)
            .bind(metadata);
    }
    let inserted: Result<Vec<(i64, i64)>, sqlx::Error> = statement.fetch_all(&mut *conn).await;
    match inserted {
        Ok(rows) if rows.is_empty() => Ok(None),
        // Positions are taken in row order, so sorted they follow the events.
        Ok(mut rows) if rows.len() == events.len() => {
            rows.sort_unstable();
            Ok(Some(rows))
        }
        Ok(rows) => Err(StoreError::Corrupt(format!("appended {} rows for {} events", rows.len(), events.len()))),
        Err(e) if is_unique_violation(&e) => Err(unique_violation(conn, stream, events).await),
        Err(e) => Err(e.into()),
    }
}

/// One stream's append, at most [`INSERT_ROWS`] events, as one statement on `conn` (in
/// autocommit, or in a group's transaction): refused (CONFLICT, ARCHIVED) with nothing
/// written when its expectation does not hold.
pub(super) async fn append_stream_on(conn: &mut SqliteConnection, stream: &StreamAppend, now: &str) -> Result<AppendOutcome, StoreError> {
    let Some(rows) = insert(conn, stream, &stream.events, stream.expected.as_param(), now).await? else {
        return Err(refused(conn, stream).await);
    };
    let first_version = rows.first().map_or(Ok(1), |&(_, version)| from_i64(version, "version"))?;
    Ok(AppendOutcome {
        streams: vec![StreamOutcome {
            stream_id: stream.stream_id.clone(),
            first_version,
            last_version: first_version + rows.len() as u64 - 1,
        }],
        positions: positions(rows)?,
        replayed: false,
    })
}

fn positions(rows: Vec<(i64, i64)>) -> Result<Vec<Position>, StoreError> {
    rows.into_iter()
        .map(|(position, _)| Ok(Position(from_i64(position, "position")?)))
        .collect()
}

/// Why the one-statement append wrote nothing: its stream was archived, or was not at the
/// expected version (read again on the same connection: nothing in this process wrote in
/// between).
async fn refused(conn: &mut SqliteConnection, stream: &StreamAppend) -> StoreError {
    match checked_version(conn, stream).await {
        Err(e) => e,
        Ok(actual) => StoreError::Conflict {
            stream: stream.stream_id.clone(),
            expected: stream.expected,
            actual,
        },
    }
}

/// The version of `stream` when it meets the append's expectation; ARCHIVED when it was
/// archived whole, CONFLICT when it is at another version.
async fn checked_version(conn: &mut SqliteConnection, stream: &StreamAppend) -> Result<u64, StoreError> {
    let (archived, actual) = stream_state(conn, &stream.stream_id).await?;
    if let Some(version) = archived {
        return Err(StoreError::StreamArchived {
            stream: stream.stream_id.clone(),
            version,
        });
    }
    if !stream.expected.is_met_by(actual) {
        return Err(StoreError::Conflict {
            stream: stream.stream_id.clone(),
            expected: stream.expected,
            actual,
        });
    }
    Ok(actual)
}

/// A unique violation while inserting `events` of `stream`: either the stream moved on (the
/// version index, `events_stream_version_key`) or an event id is already stored (or is
/// given twice). SQLite's code does not say which index, and its message is not an
/// interface, so ask the data.
async fn unique_violation(conn: &mut SqliteConnection, stream: &StreamAppend, events: &[NewEvent]) -> StoreError {
    let mut ids = std::collections::HashSet::with_capacity(events.len());
    for event in events {
        let stored: Result<bool, sqlx::Error> = sqlx::query_scalar("select exists (select 1 from events where event_id = ?1)")
            .bind(event.event_id.to_string())
            .fetch_one(&mut *conn)
            .await;
        match stored {
            Ok(false) if ids.insert(event.event_id) => {}
            Ok(_) => return StoreError::InvalidRequest(format!("event id {} is already stored", event.event_id)),
            Err(e) => return e.into(),
        }
    }
    match current_version(conn, &stream.stream_id).await {
        Ok(actual) => StoreError::Conflict {
            stream: stream.stream_id.clone(),
            expected: stream.expected,
            actual,
        },
        Err(e) => e,
    }
}

/// What an append reads of a stream before it writes: the version its tombstone keeps (none
/// unless archived whole) and its version in the hot table (truncation keeps the newest
/// events there).
async fn stream_state(conn: &mut SqliteConnection, stream_id: &str) -> Result<(Option<u64>, u64), StoreError> {
    let (archived, hot): (Option<i64>, i64) = sqlx::query_as(
        "select (select archived_through from stream_archives where stream_id = ?1 and whole), \
                coalesce((select max(version) from events where stream_id = ?1), 0)",
    )
    .bind(stream_id)
    .fetch_one(conn)
    .await?;
    Ok((archived.map(|v| from_i64(v, "archived version")).transpose()?, from_i64(hot, "version")?))
}

/// Most events one insert statement writes: a stream's events go in statements of this many
/// rows (five parameters each, SQLite allows 32,766), each statement text prepared once.
const INSERT_ROWS: usize = 32;

/// Every write's `recorded_at`, in SQL: now (`$now`, a parameter), or the newest event's time
/// if that is later. With one writer at a time this keeps `recorded_at` non-decreasing in
/// position order even if the clock steps back (the fixed-width text compares as time).
macro_rules! recorded_at_sql {
    ($now:literal) => {
        concat!(
            "max(",
            $now,
            ", coalesce((select recorded_at from events order by position desc limit 1), ",
            $now,
            "))"
        )
    };
}

/// The insert of `rows` events of one stream: `?1` stream id, `?2` category, `?3` now,
/// `?4` the expected version (-1: any, 0: no stream), then five parameters per row. It
/// writes after the stream's version only when that is the expected one and the stream was
/// not archived whole (its events then left the hot table, so its version there reads 0),
/// at `recorded_at_sql!`. Returns (position, version).
fn checked_insert_sql(rows: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        (1..=INSERT_ROWS)
            .map(|n| {
                let values: Vec<String> = (0..n)
                    .map(|row| {
                        let p = 5 + row * 5;
                        format!("(?{p}, {}, ?{}, ?{}, ?{}, ?{})", row + 1, p + 1, p + 2, p + 3, p + 4)
                    })
                    .collect();
                format!(
                    concat!(
                        "insert into events (event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at)
                         select r.column1, ?1, ?2, s.version + r.column2, r.column3, r.column4, r.column5, r.column6, s.recorded_at
                           from (select coalesce((select max(version) from events where stream_id = ?1), 0) as version, ",
                        recorded_at_sql!("?3"),
                        " as recorded_at) s,
                                (values {}) r
                          where (?4 < 0 or s.version = ?4)
                            and not exists (select 1 from stream_archives where stream_id = ?1 and whole)
                         returning position, version"
                    ),
                    values.join(", ")
                )
            })
            .collect()
    });
    &statements[rows.clamp(1, INSERT_ROWS) - 1]
}

/// The `recorded_at` of a write that is not one of the inserts above (`recorded_at_sql!`).
pub(super) async fn recorded_at(conn: &mut SqliteConnection) -> Result<String, StoreError> {
    let now = format_timestamp(OffsetDateTime::now_utc())?;
    Ok(sqlx::query_scalar(concat!("select ", recorded_at_sql!("?1")))
        .bind(now)
        .fetch_one(conn)
        .await?)
}

/// The stream's version: an archived stream keeps its tombstone's (it never restarts at 1).
pub(super) async fn current_version(conn: &mut SqliteConnection, stream_id: &str) -> Result<u64, StoreError> {
    let (archived, hot) = stream_state(conn, stream_id).await?;
    Ok(archived.unwrap_or(0).max(hot))
}

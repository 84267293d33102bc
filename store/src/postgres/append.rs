//! Appending: the statements (one per expectation kind), the transaction around several
//! streams or an idempotency key, and the retry loop for the races an append may lose.
//!
//! One file (about 550 lines): the statements, the transaction and the retry loop share
//! `Failure`, the constraint names and each other's helpers; apart, each would reach into the others.

use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::group_commit::{Answer, GroupCommit};
use super::{to_u64, PgStore, ORDINAL_BITS};
use crate::error::StoreError;
use crate::event::{category_of, AppendOutcome, AppendRequest, ExpectedVersion, NewEvent, Position, StreamAppend, StreamOutcome};

/// The constraint that makes two appends of the same stream version impossible.
const STREAM_VERSION_KEY: &str = "events_stream_version_key";
/// The constraint that keeps event ids unique.
const EVENT_ID_KEY: &str = "events_event_id_key";
const UNIQUE_VIOLATION: &str = "23505";

/// Attempts for an append that lost a race it may retry (`Any`, a deadlock).
const MAX_ATTEMPTS: u32 = 100;
/// Longest pause between two attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(40);

/// One stream's append, in one statement (see the migration for the position scheme).
///
/// $1 stream_id, $2 category, $3 expected version (-1 = any), $4..$8 the event's columns
/// (arrays of them for several events), $9 the ordinal before this stream's first event:
/// the events of earlier streams in the request (so positions follow the request order).
///
/// The expectation costs at most one index probe, and the unique key
/// `events_stream_version_key` arbitrates races (optimistic concurrency enforced by the
/// constraint, not by a read-then-write):
/// * `NoStream` / `Exact(0)` write version 1.. with no read at all: versions have no gaps,
///   so the stream is empty exactly when version 1 is free, and the constraint says so
///   (an archived or truncated stream keeps a marker there, see `archive.rs`).
/// * `Exact(n)` writes n+1.. if version n exists; if n+1 exists too, the constraint says so.
/// * `Any` reads max(version) and writes after it, unless the stream was archived whole
///   (its marker counts in that max); a racing writer makes it retry.
///
/// Each kind is its own statement, with no branch on a parameter: Postgres then settles on
/// a generic plan for the prepared statement. (One statement with `case $3 ...` branches
/// was re-planned on every call, because each custom plan folded the branches away and
/// looked cheaper than the generic one: a third of the cost of a single-event append.)
///
/// Returns `(position, version)` per event; no row when `Exact(n)` found no version n.
macro_rules! append_sql {
    (one, $start:literal, $check:literal) => {
        concat!(
            "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
             select (pg_current_xact_id()::text::bigint << 20) + $9::bigint + 1, $4, $1, $2, ",
            $start,
            " + 1, $5, $6, $7::text::json, $8::text::json ",
            $check,
            " returning position, version"
        )
    };
    (many, $start:literal, $check:literal) => {
        concat!(
            "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
             select (pg_current_xact_id()::text::bigint << 20) + $9::bigint + e.ordinal,
                    e.event_id, $1, $2, s.version + e.ordinal, e.event_type, e.schema_version, e.data::json, e.metadata::json
               from (select ",
            $start,
            " as version) s,
                    unnest($4::uuid[], $5::text[], $6::int4[], $7::text[], $8::text[])
                        with ordinality as e(event_id, event_type, schema_version, data, metadata, ordinal) ",
            $check,
            " returning position, version"
        )
    };
}

/// The three statements for one shape of stream append (one event, or several as arrays),
/// one per kind of expectation.
struct AppendStatements {
    /// `NoStream` / `Exact(0)`: versions 1.., no read.
    fresh: &'static str,
    /// `Exact(n)`, n > 0: written only if version n exists.
    exact: &'static str,
    /// `Any`: after the stream's current `max(version)`.
    any: &'static str,
}

impl AppendStatements {
    fn for_expectation(&self, expected: ExpectedVersion) -> &'static str {
        match expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => self.fresh,
            ExpectedVersion::Exact(_) => self.exact,
            ExpectedVersion::Any => self.any,
        }
    }
}

/// The three statements of one shape (`one` or `many`, see `append_sql!`).
macro_rules! append_statements {
    ($shape:ident) => {
        AppendStatements {
            // No read at all: a stream with an archive row (archived whole, or truncated)
            // keeps its marker at version 1 in the hot table (migration 0008), so the key
            // refuses it like any stream that exists.
            fresh: append_sql!($shape, "$3::bigint", ""),
            // `position > 0`: version n itself, not a marker standing for a moved version 1.
            // No read of `stream_archives`: archiving a stream whole moves every live event
            // under a table lock (`archive.rs`), so a live version n means it was not.
            exact: append_sql!(
                $shape,
                "$3::bigint",
                "where exists (select 1 from events where stream_id = $1 and version = $3::bigint and position > 0)"
            ),
            any: append_sql!(
                $shape,
                "(select coalesce(max(version), 0) from events where stream_id = $1)",
                "where $3::bigint < 0 and not exists (select 1 from stream_archives where stream_id = $1 and whole)"
            ),
        }
    };
}

/// A stream append of exactly one event: its columns bound as scalars.
const ONE_EVENT: AppendStatements = append_statements!(one);
/// A stream append of several events: their columns bound as arrays and unnested.
const SEVERAL_EVENTS: AppendStatements = append_statements!(many);

/// The statement of a one-event append to a new stream written alone (a cart's first event,
/// or any such append that finds a group-commit writer free). Public so that the store
/// benchmark can run it through another client and tell what the table and its statement
/// cost from what the store's code around them costs.
pub const NEW_STREAM_APPEND_SQL: &str = ONE_EVENT.fresh;

impl PgStore {
    /// [`EventStore::append`](crate::EventStore::append): one statement when it can be
    /// (shared with other appends when it can be), else one transaction; then the wake-ups.
    pub(super) async fn append_request(&self, mut request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let outcome = match request.streams.len() {
            1 if request.idempotency.is_none() => {
                let stream = request.streams.pop().ok_or_else(|| StoreError::InvalidRequest("no stream".into()))?;
                self.append_one_statement(stream).await?
            }
            _ => self.append_transaction(&request, None).await?,
        };
        if !outcome.replayed {
            self.inner.wakeups.committed(outcome.last_position());
        }
        Ok(outcome)
    }

    /// One stream, no idempotency key: one statement, one round trip; shared with other
    /// appends waiting at the same time when it can be (`group_commit`).
    async fn append_one_statement(&self, stream: StreamAppend) -> Result<AppendOutcome, StoreError> {
        let (stream, mut answered) = match &self.inner.group_commit {
            Some(group) if GroupCommit::accepts(&stream) => match group.write(stream).await? {
                (stream, Answer::Written(written)) => (stream, Some(written)),
                (stream, Answer::Alone) => (stream, None),
            },
            Some(group) => {
                let written = group.write_alone(&stream).await;
                (stream, written)
            }
            None => (stream, None),
        };
        let mut attempt = 0;
        let mut pauses = None;
        loop {
            attempt += 1;
            // The statement is alone in its implicit transaction: no ordinal is taken yet.
            let written = match answered.take() {
                Some(written) => written,
                None => write_stream(&self.inner.pool, &stream, 0).await,
            };
            let failure = match written {
                Ok(written) => {
                    return Ok(AppendOutcome {
                        streams: vec![written.outcome(&stream.stream_id)],
                        positions: written.positions,
                        replayed: false,
                    });
                }
                Err(failure) => failure,
            };
            if let Some(error) = retry_or_error(&self.inner.pool, failure, attempt).await? {
                return Err(error);
            }
            tokio::time::sleep(pauses.get_or_insert_with(retry_pauses).next().unwrap_or(MAX_RETRY_PAUSE)).await;
        }
    }

    /// Several streams or an idempotency key: one explicit transaction. With `shred`, the
    /// subject's data key is deleted in it too (`KeyStore::shred`).
    pub(super) async fn append_transaction(&self, request: &AppendRequest, shred: Option<&str>) -> Result<AppendOutcome, StoreError> {
        let mut attempt = 0;
        let mut pauses = None;
        loop {
            attempt += 1;
            let mut tx = self.inner.pool.begin().await?;
            if let Some(subject) = shred {
                sqlx::query(super::keys::DELETE).bind(subject).execute(&mut *tx).await?;
            }
            // A transaction of our own: no ordinal is taken yet.
            let failure = match write_request(&mut tx, request).await {
                Ok(Written::Appended(outcome)) => {
                    tx.commit().await?;
                    return Ok(outcome);
                }
                Ok(Written::Replayed(outcome)) => {
                    tx.rollback().await?;
                    return Ok(outcome);
                }
                Err(failure) => {
                    tx.rollback().await?;
                    failure
                }
            };
            if let Some(error) = retry_or_error(&self.inner.pool, failure, attempt).await? {
                return Err(error);
            }
            tokio::time::sleep(pauses.get_or_insert_with(retry_pauses).next().unwrap_or(MAX_RETRY_PAUSE)).await;
        }
    }
}

/// After a failed attempt whose transaction is rolled back: `None` to try again, or the
/// error to report.
async fn retry_or_error<'e, E: PgExecutor<'e>>(executor: E, failure: Failure, attempt: u32) -> Result<Option<StoreError>, StoreError> {
    match failure {
        Failure::Stale { stream, expected } => {
            // A unique check waits for the transaction holding the key, so a winner has
            // committed and this read sees the version that beat us.
            let (actual, archived) = stream_state(executor, &stream).await?;
            if archived {
                return Ok(Some(StoreError::StreamArchived { stream, version: actual }));
            }
            let retry = expected.is_met_by(actual);
            Ok((!retry || attempt >= MAX_ATTEMPTS).then_some(StoreError::Conflict { stream, expected, actual }))
        }
        Failure::Retry(e) => Ok((attempt >= MAX_ATTEMPTS).then_some(StoreError::Database(e))),
        Failure::Store(e) => Ok(Some(e)),
    }
}

/// What one call of `write_request` did; the caller commits or rolls back.
enum Written {
    Appended(AppendOutcome),
    /// The idempotency key was used before with the same request: nothing was written.
    Replayed(AppendOutcome),
}

/// Why an attempt failed. The transaction must be rolled back.
pub(super) enum Failure {
    /// The stream was not as expected when we wrote: an `Exact(n)` found no version n, or
    /// another append holds a version we meant to write (unique violation of
    /// `events_stream_version_key`). After re-reading the stream: a conflict, or (for `Any`,
    /// or when a racing writer has since made the expectation true) a reason to try again.
    Stale {
        stream: String,
        expected: ExpectedVersion,
    },
    /// A deadlock or serialisation failure: worth trying the whole transaction again.
    Retry(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Store(StoreError::Database(e))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub(super) struct StreamWritten {
    /// The stream's version before the append.
    pub actual: u64,
    pub positions: Vec<Position>,
}

impl StreamWritten {
    fn outcome(&self, stream_id: &str) -> StreamOutcome {
        StreamOutcome {
            stream_id: stream_id.to_owned(),
            first_version: self.actual + 1,
            last_version: self.actual + self.positions.len() as u64,
        }
    }
}

/// The whole request inside an open transaction that has appended nothing yet.
async fn write_request(conn: &mut PgConnection, request: &AppendRequest) -> Result<Written, Failure> {
    if let Some(key) = &request.idempotency {
        // Inserted first: a concurrent duplicate blocks here until we commit or roll back,
        // then finds our row (and outcome) instead of appending a second time.
        let claimed = sqlx::query("insert into idempotency_keys (actor, key, fingerprint) values ($1, $2, $3) on conflict do nothing")
            .bind(&key.actor)
            .bind(&key.key)
            .bind(&key.fingerprint)
            .execute(&mut *conn)
            .await
            .map_err(classify)?
            .rows_affected()
            == 1;
        if !claimed {
            let Some((fingerprint, mut outcome)) = stored_outcome(&mut *conn, &key.actor, &key.key).await? else {
                // Only a row that is never deleted made the insert do nothing; try again.
                return Err(Failure::Retry(sqlx::Error::RowNotFound));
            };
            if fingerprint != key.fingerprint {
                return Err(StoreError::IdempotencyKeyReused {
                    actor: key.actor.clone(),
                    key: key.key.clone(),
                }
                .into());
            }
            outcome.replayed = true;
            return Ok(Written::Replayed(outcome));
        }
    }

    // Positions follow the request order (each stream's events start at its offset), but
    // streams are written in stream-id order: two multi-stream appends that share streams
    // then wait on each other's version keys in one order, and the loser gets a prompt
    // conflict instead of a deadlock found only after deadlock_timeout.
    let streams = &request.streams;
    let mut offsets = Vec::with_capacity(streams.len());
    let mut offset = 0;
    for stream in streams {
        offsets.push(offset);
        offset += stream.events.len() as i64;
    }
    if offset >= 1 << ORDINAL_BITS {
        return Err(transaction_full().into());
    }
    let mut order: Vec<usize> = (0..streams.len()).collect();
    order.sort_by(|&a, &b| streams[a].stream_id.cmp(&streams[b].stream_id));

    let mut written: Vec<Option<StreamWritten>> = streams.iter().map(|_| None).collect();
    for i in order {
        written[i] = Some(write_stream(&mut *conn, &streams[i], offsets[i]).await?);
    }

    let mut outcome = AppendOutcome {
        streams: Vec::with_capacity(streams.len()),
        positions: Vec::with_capacity(request.event_count()),
        replayed: false,
    };
    for (stream, w) in streams.iter().zip(written) {
        let w = w.ok_or_else(|| StoreError::Corrupt(format!("stream {} was not written", stream.stream_id)))?;
        outcome.streams.push(w.outcome(&stream.stream_id));
        outcome.positions.extend(w.positions);
    }

    if let Some(key) = &request.idempotency {
        sqlx::query("update idempotency_keys set outcome = $3 where actor = $1 and key = $2")
            .bind(&key.actor)
            .bind(&key.key)
            .bind(Json(&outcome))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
    }
    Ok(Written::Appended(outcome))
}

/// One stream in one statement (`ONE_EVENT` or `SEVERAL_EVENTS`), its first event at ordinal `before + 1`.
pub(super) async fn write_stream<'e, E: PgExecutor<'e>>(executor: E, stream: &StreamAppend, before: i64) -> Result<StreamWritten, Failure> {
    let query = match stream.events.as_slice() {
        [event] => {
            let (data, metadata) = event.json_text()?;
            sqlx::query(ONE_EVENT.for_expectation(stream.expected))
                .bind(&stream.stream_id)
                .bind(category_of(&stream.stream_id))
                .bind(stream.expected.as_param())
                .bind(event.event_id)
                .bind(&event.event_type)
                .bind(event.schema_version)
                .bind(data)
                .bind(metadata)
        }
        events => {
            let (data, metadata): (Vec<&str>, Vec<String>) =
                events.iter().map(NewEvent::json_text).collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
            sqlx::query(SEVERAL_EVENTS.for_expectation(stream.expected))
                .bind(&stream.stream_id)
                .bind(category_of(&stream.stream_id))
                .bind(stream.expected.as_param())
                .bind(events.iter().map(|e| e.event_id).collect::<Vec<Uuid>>())
                .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<&str>>())
                .bind(events.iter().map(|e| e.schema_version).collect::<Vec<i32>>())
                .bind(data)
                .bind(metadata)
        }
    };
    let stale = || Failure::Stale {
        stream: stream.stream_id.clone(),
        expected: stream.expected,
    };
    let rows = query.bind(before).fetch_all(executor).await.map_err(|e| match classify(e) {
        Failure::Store(StoreError::Database(sqlx::Error::Database(db))) if is_unique_violation(db.as_ref(), STREAM_VERSION_KEY) => stale(),
        other => other,
    })?;
    if rows.is_empty() {
        return Err(stale());
    }
    if rows.len() != stream.events.len() {
        return Err(StoreError::Corrupt(format!("appended {} rows for {} events", rows.len(), stream.events.len())).into());
    }
    let mut appended = rows
        .iter()
        .map(|row| Ok((to_u64(row.try_get(0)?, "position")?, to_u64(row.try_get(1)?, "version")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    appended.sort_unstable();
    Ok(StreamWritten {
        actual: appended[0].1 - 1,
        positions: appended.into_iter().map(|(position, _)| Position(position)).collect(),
    })
}

/// Sorts a database error into what the append loop does with it. Never reads message text.
pub(super) fn classify(e: sqlx::Error) -> Failure {
    if let sqlx::Error::Database(db) = &e {
        if is_unique_violation(db.as_ref(), EVENT_ID_KEY) {
            return Failure::Store(StoreError::InvalidRequest("an event id in this append is already stored".into()));
        }
        // deadlock_detected, serialization_failure
        if matches!(db.code().as_deref(), Some("40P01") | Some("40001")) {
            return Failure::Retry(e);
        }
    }
    Failure::Store(StoreError::Database(e))
}

/// A unique violation of the named constraint, told by SQLSTATE and constraint name.
pub fn is_unique_violation(db: &dyn sqlx::error::DatabaseError, constraint: &str) -> bool {
    db.code().as_deref() == Some(UNIQUE_VIOLATION) && db.constraint() == Some(constraint)
}

pub(super) async fn stream_version<'e, E: PgExecutor<'e>>(executor: E, stream_id: &str) -> Result<u64, StoreError> {
    Ok(stream_state(executor, stream_id).await?.0)
}

/// The stream's version and whether it was archived whole. An archived stream keeps the
/// version it had (its tombstone's): it never restarts at 1.
pub(super) async fn stream_state<'e, E: PgExecutor<'e>>(executor: E, stream_id: &str) -> Result<(u64, bool), StoreError> {
    let (version, archived): (i64, Option<i64>) = sqlx::query_as(
        "select coalesce(max(version), 0),
                (select archived_through from stream_archives where stream_id = $1 and whole)
           from events where stream_id = $1 and position > 0",
    )
    .bind(stream_id)
    .fetch_one(executor)
    .await?;
    match archived {
        Some(archived) => Ok((to_u64(archived.max(version), "stream version")?, true)),
        None => Ok((to_u64(version, "stream version")?, false)),
    }
}

/// The fingerprint and outcome stored for (actor, key), if any.
pub(super) async fn stored_outcome<'e, E: PgExecutor<'e>>(
    executor: E,
    actor: &str,
    key: &str,
) -> Result<Option<(String, AppendOutcome)>, StoreError> {
    let row: Option<(String, Option<Json<AppendOutcome>>)> =
        sqlx::query_as("select fingerprint, outcome from idempotency_keys where actor = $1 and key = $2")
            .bind(actor)
            .bind(key)
            .fetch_optional(executor)
            .await?;
    row.map(|(fingerprint, outcome)| {
        // Null only inside the transaction that claimed the key, which others cannot see.
        let outcome = outcome.ok_or_else(|| StoreError::Corrupt(format!("idempotency key {key:?} of {actor:?} has no stored outcome")))?;
        Ok((fingerprint, outcome.0))
    })
    .transpose()
}

fn transaction_full() -> StoreError {
    StoreError::InvalidRequest(format!("one transaction may append at most {} events", (1u64 << ORDINAL_BITS) - 1))
}

/// Short, growing, jittered pauses between attempts so racing writers spread out
/// (backon's schedule: 1 ms doubling to `MAX_RETRY_PAUSE`, each with random jitter). Made
/// at the first retry only: its random source is not free, and most appends never retry.
fn retry_pauses() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(MAX_RETRY_PAUSE)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Test support: the interleavings the feed must survive need a transaction that took its
/// positions and commits late (or rolls back), which `append` never leaves open.
#[cfg(feature = "testing")]
impl PgStore {
    /// Appends with the store's own statements inside `tx`, which the caller commits or
    /// rolls back: one attempt, no retry.
    pub async fn append_uncommitted(&self, tx: &mut PgConnection, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        match write_request(&mut *tx, &request).await {
            Ok(Written::Appended(outcome) | Written::Replayed(outcome)) => Ok(outcome),
            Err(failure) => match retry_or_error(&mut *tx, failure, MAX_ATTEMPTS).await? {
                Some(error) => Err(error),
                None => Err(StoreError::InvalidRequest("the append lost a race; try again".into())),
            },
        }
    }

    /// Wakes readers, here and in other processes, for events up to `last_position`
    /// committed by a transaction of [`append_uncommitted`](Self::append_uncommitted).
    pub fn notify_committed(&self, last_position: Position) {
        self.inner.wakeups.committed(last_position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_map_to_the_statement_parameter() {
        assert_eq!(ExpectedVersion::Any.as_param(), -1);
        assert_eq!(ExpectedVersion::NoStream.as_param(), 0);
        assert_eq!(ExpectedVersion::Exact(7).as_param(), 7);
        assert_eq!(ExpectedVersion::Exact(u64::MAX).as_param(), i64::MAX);
        assert!(ExpectedVersion::Exact(0).is_met_by(0) && ExpectedVersion::NoStream.is_met_by(0));
        assert!(!ExpectedVersion::NoStream.is_met_by(1));
    }
}

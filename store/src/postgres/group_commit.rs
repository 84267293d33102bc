//! Group commit: one-stream appends (no idempotency key, expecting no stream or an exact
//! version, at most [`MAX_GROUPED_EVENTS`] events: the command path's appends) that arrive
//! while earlier ones are being written share one statement, one transaction and one WAL
//! flush.
//!
//! At most `writers` statements are in flight. An append that finds a writer free is written
//! at once, alone, in its caller's task, with the store's own statement: grouping costs a
//! lone writer nothing. Otherwise it queues; a dispatcher task takes the first waiting
//! append, waits for a free writer, then takes the appends queued behind it, up to
//! [`MAX_GROUP_ROWS`] events, and writes them as one `INSERT` on a task of its own. Under
//! load, groups grow by themselves. A group's writer is freed only after the callers it
//! answered had their turn to queue their next appends, so they are grouped again instead
//! of the first of them being written alone and the rest behind it. The statements run on
//! the store's own connections (`connections.rs`), off the pool and its pings; appends the
//! group does not take (`Any`, or more events) are written alone, on a spare one of those
//! when one is free.
//!
//! Each append's expectation is checked on its own, in the same statement: its rows are
//! inserted only if its expected version exists (`Exact(n)`), one condition for all of an
//! append's rows, so they pass or fail together. That live version n also says the stream
//! was not archived whole (archiving moves every live event). An append expecting no stream
//! reads nothing: version 1's key is free only for a stream that never existed (an archived
//! or truncated one keeps a marker there, see `archive.rs`). The stream-version key
//! arbitrates races:
//! * a group of single-event appends says `on conflict do nothing`, so an append that loses
//!   a race affects no other (the hot cart: many callers, one version);
//! * a group with a multi-event append has no such clause, since skipping some of an
//!   append's rows would write it in part: a lost race fails the statement, nothing of the
//!   group is written, and each append is tried again alone, where it gets its own answer.
//!
//! Each caller is answered only after the statement has committed, so an acknowledgement
//! still means that caller's events are durable. If the server refuses the statement as a
//! whole (a duplicate event id, a lost race above), nothing of the group was written and
//! each append is tried again alone; if the connection fails under it, each gets the
//! transient error a lone append would.
//!
//! Rows are written sorted by (stream, expected version), so two groups that touch the same
//! streams wait on each other's keys in one order instead of deadlocking.

use std::sync::Arc;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use super::append::{classify, write_stream, Failure, StreamWritten};
use super::connections::Connections;
use super::{to_u64, ORDINAL_BITS};
use crate::error::StoreError;
use crate::event::{category_of, ExpectedVersion, NewEvent, Position, StreamAppend};

/// Most events one group writes (far below the 2^20 ordinals of a transaction).
const MAX_GROUP_ROWS: usize = 512;
const _: () = assert!(MAX_GROUP_ROWS < 1 << ORDINAL_BITS);

/// Most events of an append that joins a group; a larger one is written alone.
pub(super) const MAX_GROUPED_EVENTS: usize = 64;
const _: () = assert!(MAX_GROUPED_EVENTS <= MAX_GROUP_ROWS);

/// Single-event appends, one row each: `$4` is the row's expected version (0: no stream); it
/// writes version `$4 + 1`. An append that lost its version is skipped, the others are
/// written.
///
/// An expected version is looked up with a scalar subquery (null when it is not there), not
/// `exists`: Postgres may turn an `exists` under `or` into a hashed subplan, a scan of the
/// whole table per statement, and chose that for the generic plan on a table that was never
/// analyzed (a new database, until autovacuum's first `analyze`), which kept it: grouped
/// 10-event appends ran at 13,000-17,000 events/s instead of 77,000 (a temporary probe, 8
/// writers, 8 s). A scalar subquery cannot be hashed; it probes the stream-version key.
const GROUP_OF_SINGLE_EVENTS_SQL: &str =
    "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
select (pg_current_xact_id()::text::bigint << 20) + r.ordinal, r.event_id, r.stream_id, r.category, r.expected + 1,
       r.event_type, r.schema_version, r.data::json, r.metadata::json
  from unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int4[], $7::text[], $8::text[])
       with ordinality as r(event_id, stream_id, category, expected, event_type, schema_version, data, metadata, ordinal)
 where r.expected = 0
    or (select true from events e where e.stream_id = r.stream_id and e.version = r.expected and e.position > 0)
on conflict (stream_id, version) do nothing
returning position";

/// A group with a multi-event append: the appends (`$1..$3`: stream, category, expected
/// version) are checked once each, then joined to their rows (`$4`: the row's append, `$5`:
/// its place in it, writing version `expected + $5`). No `on conflict`: a lost version fails
/// the statement, so no append is written in part.
const GROUP_SQL: &str = "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
select (pg_current_xact_id()::text::bigint << 20) + r.ordinal, r.event_id, a.stream_id, a.category, a.expected + r.nth,
       r.event_type, r.schema_version, r.data::json, r.metadata::json
  from (select * from unnest($1::text[], $2::text[], $3::int8[]) with ordinality as a(stream_id, category, expected, append)
         where a.expected = 0
            or (select true from events e where e.stream_id = a.stream_id and e.version = a.expected and e.position > 0)) a
  join unnest($4::int8[], $5::int8[], $6::uuid[], $7::text[], $8::int4[], $9::text[], $10::text[])
       with ordinality as r(append, nth, event_id, event_type, schema_version, data, metadata, ordinal)
    on r.append = a.append
returning position";

/// What a grouped append hears back.
pub(super) enum Answer {
    Written(Result<StreamWritten, Failure>),
    /// The group failed as a whole and wrote nothing: write this append alone.
    Alone,
}

struct Pending {
    stream: StreamAppend,
    reply: oneshot::Sender<(StreamAppend, Answer)>,
}

/// The caller's side: a queue into the dispatcher, which stops when this is dropped.
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
    writers: Arc<Writers>,
}

/// The statements in flight, each on one of the store's own connections
/// (`connections.rs`: not the pool's, which pings each connection it takes back).
struct Writers {
    /// One permit per statement in flight, a lone append's or a group's.
    permits: Arc<Semaphore>,
    connections: Arc<Connections>,
}

impl GroupCommit {
    /// Starts the dispatcher with at most `writers` statements in flight, on `connections`.
    pub(super) fn start(connections: Arc<Connections>, writers: usize) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let writers = Arc::new(Writers {
            permits: Arc::new(Semaphore::new(writers.max(1))),
            connections,
        });
        tokio::spawn(dispatch(pending, writers.clone()));
        GroupCommit { queue, writers }
    }

    /// Whether `stream` may share a statement with others: a few events, and an expectation
    /// the group statement checks per append.
    pub(super) fn accepts(stream: &StreamAppend) -> bool {
        (1..=MAX_GROUPED_EVENTS).contains(&stream.events.len()) && matches!(stream.expected, ExpectedVersion::NoStream | ExpectedVersion::Exact(_))
    }

    /// Writes a stream the group statement does not take, alone, on a spare connection of
    /// the store's own; `None` when none is free (the caller writes it through the pool).
    pub(super) async fn write_alone(&self, stream: &StreamAppend) -> Option<Result<StreamWritten, Failure>> {
        self.writers.connections.on_spare(async |conn| write_stream(conn, stream, 0).await).await
    }

    /// Writes `stream` with whichever group it joins; gives it back with the answer.
    pub(super) async fn write(&self, stream: StreamAppend) -> Result<(StreamAppend, Answer), StoreError> {
        // A writer is free, so nothing waits to be grouped (the dispatcher takes a free
        // writer as soon as something waits): write at once, here, with no hand-off.
        if let Ok(permit) = self.writers.permits.clone().try_acquire_owned() {
            let written = self.writers.connections.run(async |conn| write_stream(conn, &stream, 0).await).await;
            drop(permit);
            return Ok((stream, Answer::Written(written)));
        }
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(pending)) = self.queue.send(Pending { stream, reply }) {
            return Ok((pending.stream, Answer::Alone));
        }
        // The group is written on a task of its own, so it answers even if this caller has
        // gone. No answer means the runtime is shutting down under the dispatcher.
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store is shutting down; the append may or may not have been written".into()))
    }
}

async fn dispatch(mut pending: mpsc::UnboundedReceiver<Pending>, writers: Arc<Writers>) {
    // An append taken from the queue that did not fit the last group: it leads the next.
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // While every writer is busy, more appends queue behind `first` and join its group.
        let Ok(permit) = writers.permits.clone().acquire_owned().await else {
            return;
        };
        let mut rows = first.stream.events.len();
        let mut group = vec![first];
        while let Ok(next) = pending.try_recv() {
            rows += next.stream.events.len();
            if rows > MAX_GROUP_ROWS {
                carried = Some(next);
                break;
            }
            group.push(next);
        }
        let writers = writers.clone();
        tokio::spawn(async move {
            write_group(&writers, group).await;
            // The callers just answered come back together with their next appends. Let
            // them queue before this writer is free: the first of them would otherwise take
            // it and be written alone, the others grouped behind it.
            tokio::task::yield_now().await;
            drop(permit);
        });
    }
}

/// Writes one group and answers each of its appends.
async fn write_group(writers: &Writers, mut group: Vec<Pending>) {
    if let [_] = group.as_slice() {
        let Some(Pending { stream, reply }) = group.pop() else { return };
        let written = writers.connections.run(async |conn| write_stream(conn, &stream, 0).await).await;
        let _ = reply.send((stream, Answer::Written(written)));
        return;
    }
    group.sort_by(|a, b| (&a.stream.stream_id, expected(a)).cmp(&(&b.stream.stream_id, expected(b))));
    let single_events = group.iter().all(|p| p.stream.events.len() == 1);
    if !single_events {
        // A second append to a stream of this group would fail the whole statement (the same
        // version) or be refused as stale (a later one, not yet written): it goes alone.
        let (mut kept, mut alone) = (Vec::with_capacity(group.len()), Vec::new());
        for pending in group {
            match kept.last() {
                Some(Pending { stream, .. }) if stream.stream_id == pending.stream.stream_id => alone.push(pending),
                _ => kept.push(pending),
            }
        }
        answer_all(alone, &Err(Answered::Alone));
        group = kept;
    }
    // One row per event, the appends one after the other: row i is ordinal i + 1. Each row
    // with its append (and that append's place, from 1) and its own place in the append.
    let rows: Vec<(&Pending, i64, i64, &NewEvent)> = group
        .iter()
        .zip(1..)
        .flat_map(|(p, append)| p.stream.events.iter().zip(1..).map(move |(event, nth)| (p, append, nth, event)))
        .collect();
    let (data, metadata): (Vec<&str>, Vec<String>) = match rows.iter().map(|(_, _, _, e)| e.json_text()).collect::<Result<Vec<_>, _>>() {
        Ok(texts) => texts.into_iter().unzip(),
        Err(_) => return answer_all(group, &Err(Answered::Alone)),
    };
    let positions = writers
        .connections
        .run(async |conn| {
            let query = if single_events {
                sqlx::query(GROUP_OF_SINGLE_EVENTS_SQL)
                    .bind(rows.iter().map(|(_, _, _, e)| e.event_id).collect::<Vec<Uuid>>())
                    .bind(rows.iter().map(|(p, _, _, _)| p.stream.stream_id.as_str()).collect::<Vec<&str>>())
                    .bind(rows.iter().map(|(p, _, _, _)| category_of(&p.stream.stream_id)).collect::<Vec<&str>>())
                    .bind(rows.iter().map(|(p, _, _, _)| expected(p)).collect::<Vec<i64>>())
            } else {
                sqlx::query(GROUP_SQL)
                    .bind(group.iter().map(|p| p.stream.stream_id.as_str()).collect::<Vec<&str>>())
                    .bind(group.iter().map(|p| category_of(&p.stream.stream_id)).collect::<Vec<&str>>())
                    .bind(group.iter().map(expected).collect::<Vec<i64>>())
                    .bind(rows.iter().map(|(_, append, _, _)| *append).collect::<Vec<i64>>())
                    .bind(rows.iter().map(|(_, _, nth, _)| *nth).collect::<Vec<i64>>())
                    .bind(rows.iter().map(|(_, _, _, e)| e.event_id).collect::<Vec<Uuid>>())
            };
            query
                .bind(rows.iter().map(|(_, _, _, e)| e.event_type.as_str()).collect::<Vec<&str>>())
                .bind(rows.iter().map(|(_, _, _, e)| e.schema_version).collect::<Vec<i32>>())
                .bind(data)
                .bind(metadata)
                .fetch_all(conn)
                .await
                .map_err(classify)
        })
        .await;
    let written: Result<Vec<u64>, Answered> = match positions {
        Ok(positions) => positions
            .iter()
            .map(|row| to_u64(row.try_get(0)?, "position"))
            .collect::<Result<_, StoreError>>()
            .map_err(|e| Answered::Each(format!("the group's appends were written, but their positions could not be read: {e}"))),
        // The connection failed under the statement: written or not, nobody can say.
        Err(Failure::Store(StoreError::Database(e))) if !matches!(e, sqlx::Error::Database(_)) => Err(Answered::Unknown(e.to_string())),
        // The server refused the statement (a reused event id, a lost race in a group with
        // a multi-event append, a deadlock), or it was never sent (no connection): nothing
        // was written.
        Err(_) => {
            tracing::debug!(appends = group.len(), "a group append failed; writing each alone");
            Err(Answered::Alone)
        }
    };
    answer_all(group, &written);
}

/// Answers each append of a group from the positions the statement returned. The ordinal
/// in a position (its low bits) is the row's place in the statement, so it says whose row
/// it was.
fn answer_all(group: Vec<Pending>, written: &Result<Vec<u64>, Answered>) {
    let mut ordinals = written.as_ref().map(|positions| {
        let mut ordinals: Vec<(u64, u64)> = positions.iter().map(|&p| (p & ((1 << ORDINAL_BITS) - 1), p)).collect();
        ordinals.sort_unstable();
        ordinals.into_iter().peekable()
    });
    let mut first_ordinal = 1;
    for Pending { stream, reply } in group {
        let ordinal_range = first_ordinal..first_ordinal + stream.events.len() as u64;
        first_ordinal = ordinal_range.end;
        let answer = match &mut ordinals {
            Err(Answered::Alone) => Answer::Alone,
            Err(Answered::Each(reason)) => Answer::Written(Err(Failure::Store(StoreError::Corrupt(reason.clone())))),
            Err(Answered::Unknown(reason)) => Answer::Written(Err(Failure::Store(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                reason.clone(),
            )))))),
            Ok(ordinals) => {
                let mut positions = Vec::new();
                while let Some((_, position)) = ordinals.next_if(|(ordinal, _)| ordinal_range.contains(ordinal)) {
                    positions.push(Position(position));
                }
                if positions.is_empty() {
                    Answer::Written(Err(Failure::Stale {
                        stream: stream.stream_id.clone(),
                        expected: stream.expected,
                    }))
                } else if positions.len() != stream.events.len() {
                    Answer::Written(Err(Failure::Store(StoreError::Corrupt(format!(
                        "a grouped append of {} events to {} wrote {}",
                        stream.events.len(),
                        stream.stream_id,
                        positions.len()
                    )))))
                } else {
                    Answer::Written(Ok(StreamWritten {
                        actual: stream.expected.as_param().unsigned_abs(),
                        positions,
                    }))
                }
            }
        };
        let _ = reply.send((stream, answer));
    }
}

/// How a group that did not write cleanly answers its appends.
enum Answered {
    /// Nothing was written: each append is tried alone.
    Alone,
    /// Written, then the answer could not be read: each append gets this error.
    Each(String),
    /// The connection failed: each append gets a transient error of unknown outcome, as a
    /// lone append would.
    Unknown(String),
}

fn expected(pending: &Pending) -> i64 {
    pending.stream.expected.as_param()
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, PgConnection};

    use super::{GROUP_OF_SINGLE_EVENTS_SQL, GROUP_SQL};
    use crate::postgres::{PgStore, GENERIC_PLANS};

    /// The group statements' generic plans probe the stream-version key even on a table
    /// that was never analyzed, where Postgres once hashed the whole table per statement.
    #[tokio::test]
    async fn group_statements_probe_the_key_on_a_table_never_analyzed() {
        let db = crate::testing::postgres().await;
        let _migrated = PgStore::connect(&db.url).await.expect("store");
        let mut conn = PgConnection::connect(&db.url).await.expect("connect");
        sqlx::query(&format!("set {} = {}", GENERIC_PLANS.0, GENERIC_PLANS.1))
            .execute(&mut conn)
            .await
            .expect("generic plans");
        let statements = [
            (
                GROUP_OF_SINGLE_EVENTS_SQL,
                "uuid[], text[], text[], int8[], text[], int4[], text[], text[]",
                "array[gen_random_uuid()], array['cart-a'], array['cart'], array[3::int8], array['T'], array[1], array['{}'], array['{}']",
            ),
            (
                GROUP_SQL,
                "text[], text[], int8[], int8[], int8[], uuid[], text[], int4[], text[], text[]",
                "array['cart-a'], array['cart'], array[3::int8], array[1::int8], array[1::int8], array[gen_random_uuid()], array['T'], array[1], array['{}'], array['{}']",
            ),
        ];
        for (n, (sql, types, args)) in statements.into_iter().enumerate() {
            // The store's own statements and literals: nothing here comes from a caller.
            sqlx::raw_sql(&format!("prepare group_{n}({types}) as {sql}"))
                .execute(&mut conn)
                .await
                .expect("prepare");
            let plan: Vec<String> = sqlx::query_scalar(&format!("explain execute group_{n}({args})"))
                .fetch_all(&mut conn)
                .await
                .expect("explain");
            let plan = plan.join("\n");
            assert!(
                plan.contains("Index Scan using events_stream_version_key") && !plan.contains("Seq Scan on events"),
                "{plan}"
            );
        }
    }
}

//! Reading: the global feed below the horizon (and the wait that gives read-your-writes on
//! it), the head, and one stream's events. Why reading only below the horizon makes the
//! feed gap-free is explained next to the SQL in `migrations/postgres/0001_event_store.sql`.

use std::time::Duration;

use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{Row, ValueRef};

use super::{to_i64, to_u64, PgStore};
use crate::error::StoreError;
use crate::event::{check_feed_categories, EventData, Metadata, Position, RecordedEvent, StreamEvent};
use crate::upcast::upcast;

/// A stream page from the hot table, each row led by the stream's archive state (`whole`,
/// `archived_through`, null when it has none) so that one round trip says whether the
/// stream was archived or truncated; an empty page is one row of nulls after those two.
/// `position > 0` leaves out the marker an archived or truncated stream keeps at version 1
/// (`archive.rs`).
macro_rules! stream_page_sql {
    ($columns:literal) => {
        concat!(
            "select a.whole, a.archived_through, e.* from (select 1) one
               left join stream_archives a on a.stream_id = $1
               left join lateral (select ",
            $columns,
            " from events where stream_id = $1 and version >= $2 and position > 0 order by version limit $3) e on true"
        )
    };
}

/// The same over the hot table and the archive, for a stream truncated behind a snapshot
/// (`EventStore::truncate_stream`) read from below the truncation point.
macro_rules! stream_page_with_archive_sql {
    ($columns:literal) => {
        concat!(
            "select null::boolean, null::bigint, s.* from (
               (select ",
            $columns,
            " from events where stream_id = $1 and version >= $2 and position > 0 order by version limit $3)
               union all
               (select ",
            $columns,
            " from archived_events where stream_id = $1 and version >= $2 order by version limit $3)) s
             order by s.version limit $3"
        )
    };
}

/// Every column, in the order `decode_event_at` reads them (after the two archive columns).
const READ_STREAM_SQL: [&str; 2] = [
    stream_page_sql!("position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at"),
    stream_page_with_archive_sql!("position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at"),
];

/// What folding an aggregate reads (`load_stream`): no stream id, event id or metadata.
const LOAD_STREAM_SQL: [&str; 2] = [
    stream_page_sql!("position, version, event_type, schema_version, data, recorded_at"),
    stream_page_with_archive_sql!("position, version, event_type, schema_version, data, recorded_at"),
];

/// Most events a feed page reserves room for before it knows how many come.
const PAGE_CAPACITY: usize = 1_000;

/// Where a stream page's event columns start (after `whole` and `archived_through`).
const EVENT_COLUMNS_AT: usize = 2;

/// The feed below the horizon of this statement's own snapshot (see the migration), then
/// one more row: that horizon in the `position` column and nulls elsewhere, so the reader
/// knows how far the page is complete (also when it is empty).
///
/// The hot table and the archive (0006) are read together, each in position order along
/// its primary key and merged, in ONE statement: one snapshot, so an event moved to the
/// archive between two pages is found in exactly one of the two tables by each page, and
/// the feed is the same before and after archiving. For a reader near the head the archive's
/// part is one index probe that finds nothing (archived events are old). The horizon is
/// computed once (`h`) and compared as a parameter.
///
/// The shape is measured (pgbench, pages of 1,000, one client): the horizon joined to every
/// row (`left join lateral`) made Postgres project each row once more, 710 pages/s against
/// 880 this way (940 for the hot table alone with no horizon at all); an outer `order by
/// e.position` made it sort every page again (0.8 of 2.2 ms). The rows come in the
/// subqueries' order, but SQL does not promise that, so `read_page` checks it.
const READ_ALL_SQL: &str = "with h as (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 as horizon)
(select * from (
      (select position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at
         from events
        where position > $1 and position < (select horizon from h)
        order by position
        limit $2)
      union all
      (select position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at
         from archived_events
        where position > $1 and position < (select horizon from h)
        order by position
        limit $2)) u
 order by position
 limit $2)
union all
select horizon, null, null, null, null, null, null, null, null from h";

/// The same, filtered by category. Each category is read on its own, in position order
/// along `events_category_position_idx` (and the archive's twin), at most a page each, and
/// the pages are merged: `category = any($3) order by position limit $2` made the planner
/// fetch every matching event after `$1` and sort them for each page, so a rebuild from
/// position 0 got slower with every page (130 ms per page of 5,000 over 200,000 cart events,
/// 12 ms this way).
const READ_ALL_CATEGORIES_SQL: &str = "with h as (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 as horizon)
(select f.* from (select distinct unnest($3::text[])) as c(category)
  cross join lateral (
        (select position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at
           from events
          where category = c.category and position > $1 and position < (select horizon from h)
          order by position
          limit $2)
        union all
        (select position, stream_id, version, event_id, event_type, schema_version, data, metadata, recorded_at
           from archived_events
          where category = c.category and position > $1 and position < (select horizon from h)
          order by position
          limit $2)) f
 order by f.position
 limit $2)
union all
select horizon, null, null, null, null, null, null, null, null from h";

const HEAD_SQL: &str = "select h.horizon, greatest(
         coalesce((select max(position) from events where position < h.horizon), 0),
         coalesce((select max(position) from archived_events where position < h.horizon), 0))
  from (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 as horizon) h";

impl PgStore {
    pub(super) async fn read_stream_page(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stream_page(READ_STREAM_SQL, 2, stream_id, from_version, limit, decode_event_at)
            .await
    }

    pub(super) async fn load_stream_page(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<StreamEvent>, StoreError> {
        self.stream_page(LOAD_STREAM_SQL, 1, stream_id, from_version, limit, |row, at| {
            let position = Position(to_u64(row.try_get_unchecked(at)?, "position")?);
            let event_type: String = row.try_get_unchecked(at + 2)?;
            let (schema_version, data) = upcast(&event_type, row.try_get_unchecked(at + 3)?, json_column(row, at + 4)?)?;
            Ok(StreamEvent {
                position,
                version: to_u64(row.try_get_unchecked(at + 1)?, "version")?,
                event_type,
                schema_version,
                data,
                recorded_at: row.try_get_unchecked(at + 5)?,
            })
        })
        .await
    }

    /// A page of one stream by version (`sql`: `[hot table, hot table and archive]`; the
    /// version is event column `version_at`), each event decoded with `decode` (given the row
    /// and where its event columns start) as its row arrives, while the server still sends
    /// the rest, as `read_page` does.
    ///
    /// One statement in the common case: its rows carry the stream's archive state, so an
    /// archived stream is [`StoreError::StreamArchived`] at once, and only a page of a
    /// truncated stream that starts below what the hot table holds is read again with the
    /// archive.
    async fn stream_page<T>(
        &self,
        sql: [&'static str; 2],
        version_at: usize,
        stream_id: &str,
        from_version: u64,
        limit: usize,
        decode: impl Fn(&PgRow, usize) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let query = |sql: &'static str| sqlx::query(sql).bind(stream_id).bind(to_i64(from_version)).bind(to_i64(limit as u64));
        self.inner
            .connections
            .read(&self.inner.pool, async |conn| {
                let mut rows = query(sql[0]).fetch(&mut *conn);
                let mut page = Vec::with_capacity(limit.min(PAGE_CAPACITY));
                let Some(first) = rows.try_next().await? else {
                    return Ok(page);
                };
                let archive: (Option<bool>, Option<i64>) = (first.try_get(0)?, first.try_get(1)?);
                let below_truncation = match archive {
                    (Some(true), Some(version)) => {
                        return Err(StoreError::StreamArchived {
                            stream: stream_id.to_owned(),
                            version: to_u64(version, "archived version")?,
                        });
                    }
                    // Truncated, and read from below the truncation point: the hot table has
                    // the page only if it starts where it was asked to.
                    (Some(false), Some(through)) if limit > 0 && to_i64(from_version) <= through => {
                        let first_version: Option<i64> = first.try_get(EVENT_COLUMNS_AT + version_at)?;
                        first_version != Some(to_i64(from_version.max(1)))
                    }
                    _ => false,
                };
                if below_truncation {
                    drop(rows);
                    let rows = query(sql[1]).fetch_all(&mut *conn).await?;
                    return rows.iter().map(|row| decode(row, EVENT_COLUMNS_AT)).collect();
                }
                let mut row = Some(first);
                while let Some(current) = row {
                    // An empty page is one row whose event columns are null.
                    if !current.try_get_raw(EVENT_COLUMNS_AT)?.is_null() {
                        page.push(decode(&current, EVENT_COLUMNS_AT)?);
                    }
                    row = rows.try_next().await?;
                }
                Ok(page)
            })
            .await
    }

    pub(super) async fn read_feed(&self, after: Position, limit: usize, categories: Option<&[String]>) -> Result<Vec<RecordedEvent>, StoreError> {
        check_feed_categories(categories)?;
        let after = to_i64(after.0);
        let mut wait = self.feed_wait();
        loop {
            let (horizon, events) = self.read_page(after, limit, categories).await?;
            if events.len() >= limit || !wait.again(horizon, after).await {
                return Ok(events);
            }
        }
    }

    pub(super) async fn feed_head(&self) -> Result<Position, StoreError> {
        let mut wait = self.feed_wait();
        loop {
            let (horizon, head): (i64, i64) = self
                .inner
                .connections
                .read(&self.inner.pool, async |conn| Ok(sqlx::query_as(HEAD_SQL).fetch_one(conn).await?))
                .await?;
            if !wait.again(horizon, 0).await {
                return Ok(Position(to_u64(head, "position")?));
            }
        }
    }

    /// Starts waiting for the newest commit this store knows of to reach the feed.
    fn feed_wait(&self) -> FeedWait {
        FeedWait {
            target: to_i64(self.inner.wakeups.newest_known()),
            deadline: tokio::time::Instant::now() + self.inner.feed_wait,
            pause: Duration::from_millis(1),
        }
    }

    /// One page of the feed below the horizon, and that horizon.
    async fn read_page(&self, after: i64, limit: usize, categories: Option<&[String]>) -> Result<(i64, Vec<RecordedEvent>), StoreError> {
        let query = match categories {
            None => sqlx::query(READ_ALL_SQL).bind(after).bind(to_i64(limit as u64)),
            Some(categories) => sqlx::query(READ_ALL_CATEGORIES_SQL)
                .bind(after)
                .bind(to_i64(limit as u64))
                .bind(categories),
        };
        // Each row is decoded as it arrives, while the server still sends the rest of the
        // page: collecting the page first left one of the two cores idle at a time.
        let (horizon, mut events) = self
            .inner
            .connections
            .read(&self.inner.pool, async |conn| {
                let mut rows = query.fetch(&mut *conn);
                let mut horizon = None;
                let mut events = Vec::with_capacity(limit.min(PAGE_CAPACITY));
                while let Some(row) = rows.try_next().await? {
                    // The horizon row: no stream, the horizon where the position goes.
                    if row.try_get_raw(1)?.is_null() {
                        horizon = Some(row.try_get(0)?);
                    } else {
                        events.push(decode_event_at(&row, 0)?);
                    }
                }
                Ok((horizon, events))
            })
            .await?;
        let horizon = horizon.ok_or_else(|| StoreError::Corrupt("a feed page came without its horizon".into()))?;
        if !events.is_sorted_by_key(|e| e.position) {
            events.sort_unstable_by_key(|e| e.position);
        }
        Ok((horizon, events))
    }
}

/// Read-your-writes on the feed: a reader whose page is not full waits (up to `feed_wait`)
/// until the horizon passes `target`, the newest commit known when the read began.
struct FeedWait {
    target: i64,
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl FeedWait {
    /// After a read below `horizon` that was not a full page: pauses and says true when
    /// reading again may return more.
    async fn again(&mut self, horizon: i64, after: i64) -> bool {
        if horizon > self.target || after >= self.target || tokio::time::Instant::now() >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(20));
        true
    }
}

/// The event columns starting at column `at`, upcast to the current schema.
///
/// Read with `try_get_unchecked`, without sqlx's check of each value's type against the
/// Rust type (a quarter of this function's time in the profile of a feed read): the
/// columns are the store's own, typed by its SQL, and each decode still checks its bytes.
fn decode_event_at(row: &PgRow, at: usize) -> Result<RecordedEvent, StoreError> {
    let position = Position(to_u64(row.try_get_unchecked(at)?, "position")?);
    let event_type: String = row.try_get_unchecked(at + 4)?;
    let stored_schema: i32 = row.try_get_unchecked(at + 5)?;
    let data = json_column(row, at + 6)?;
    // Parsed straight from the text: one pass, where a checked raw value and then a parse
    // were two.
    let metadata: Metadata = serde_json::from_str(row.try_get_unchecked(at + 7)?)
        .map_err(|e| StoreError::Corrupt(format!("metadata of event at position {position}: {e}")))?;
    let (schema_version, data) = upcast(&event_type, stored_schema, data)?;
    Ok(RecordedEvent {
        position,
        stream_id: row.try_get_unchecked(at + 1)?,
        version: to_u64(row.try_get_unchecked(at + 2)?, "version")?,
        event_id: row.try_get_unchecked(at + 3)?,
        event_type,
        schema_version,
        data,
        metadata,
        recorded_at: row.try_get_unchecked(at + 8)?,
    })
}

/// A `json` column (migrations 0004, 0006) as event data: its binary form is its text,
/// which Postgres checked to be JSON when it stored it.
fn json_column(row: &PgRow, at: usize) -> Result<EventData, StoreError> {
    let text: &str = row.try_get_unchecked(at)?;
    Ok(EventData::from_json_column(text.to_owned()))
}

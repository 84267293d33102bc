-- The event store, SQLite edition. Says the same thing as migrations/postgres/0001 (same
-- tables, same column names; tests/migrations.rs keeps them in step). Never edit once
-- applied: add a new numbered migration instead, in both folders.
--
-- Types: SQLite has no uuid, jsonb or timestamptz. Ids are TEXT (hyphenated lowercase
-- uuid), JSON is TEXT checked with json_valid, and times are TEXT in one fixed-width
-- RFC 3339 UTC form, 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (microseconds, like timestamptz), so
-- that comparing the text compares the instants: `recorded_at <= ?` is a time-travel query.

-- The log. Why this is a gap-free global feed, by construction:
--
-- * SQLite lets one connection write at a time: a write transaction holds the database's
--   single write lock (in WAL mode, the WAL write lock) from its first write, or from BEGIN
--   IMMEDIATE, until it commits or rolls back. The store also funnels its own writes
--   through one writer connection that begins with BEGIN IMMEDIATE (see sqlite.rs), so
--   writers queue in the process instead of meeting SQLITE_BUSY or a lock-upgrade deadlock.
-- * `position integer primary key autoincrement` is the rowid: each insert takes max+1, and
--   AUTOINCREMENT never hands out a value that was ever committed, even if the row with the
--   largest position were deleted.
-- * So a transaction that takes positions commits before the next writer can take any:
--   commit order = position order. A reader (WAL: a snapshot as of its statement's start)
--   sees a prefix of the log, never position n+1 without n. Unlike Postgres, no reader-side
--   horizon is needed. A rolled-back append leaves nothing behind: its positions are free
--   again for the next writer and no reader ever saw them.
create table events (
    position integer primary key autoincrement,
    event_id text not null unique,
    stream_id text not null check (stream_id <> '' and length(stream_id) <= 200),
    -- The part of stream_id before the first '-' (or all of it): 'cart' for 'cart-<uuid>'.
    category text not null,
    -- 1, 2, 3, ... within the stream.
    version integer not null check (version >= 1),
    event_type text not null,
    -- The schema of `data` as stored; readers upcast it to the current one.
    schema_version integer not null,
    data text not null check (json_valid(data)),
    -- store::Metadata as JSON: correlation id, causation id, actor, idempotency key.
    metadata text not null check (json_valid(metadata)),
    -- Set by the store inside the write lock, never earlier than the previous event's, so it
    -- grows with position. The default (same fixed-width form) is for hand-written rows.
    recorded_at text not null default (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')
);

-- Optimistic concurrency: the arbiter between appends that expect the same version. The store
-- checks expectations first and maps a violation of this index by SQLite's extended result
-- code 2067 (SQLITE_CONSTRAINT_UNIQUE), never by message text. The name matches the Postgres
-- constraint.
create unique index events_stream_version_key on events (stream_id, version);

-- Feeds filtered by category (projections that follow carts only, for example).
create index events_category_position_idx on events (category, position);

-- The outcome of each append that carried an idempotency key, written in the append's
-- transaction: a retry of the same command gets this back instead of appending again.
create table idempotency_keys (
    actor text not null,
    key text not null,
    -- What the command was; the same key with another fingerprint is refused.
    fingerprint text not null,
    -- store::AppendOutcome as JSON.
    outcome text not null check (json_valid(outcome)),
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    primary key (actor, key)
);

-- Aggregate state at a stream version, one per (stream, state schema version): a snapshot
-- written by code with another state shape is never read as this one.
create table snapshots (
    stream_id text not null,
    state_schema_version integer not null,
    version integer not null check (version >= 0),
    state text not null check (json_valid(state)),
    saved_at text not null default (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    primary key (stream_id, state_schema_version)
);

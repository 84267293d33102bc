-- cartsource event store, Postgres backend. Never edit once applied: add a new migration.
--
-- ## Why positions are (transaction id << 20) | ordinal
--
-- The failure this prevents: with a sequence (bigserial) position, two appends T1 and T2
-- take positions 10 and 11, T2 commits first, a reader pages the feed, sees 11, moves its
-- checkpoint to 11, and when T1 commits, event 10 appears *behind* the reader and is
-- skipped for ever. Every Postgres event store that used a plain sequence has had this bug
-- (Marten's gap skipping, Eventuous #222); Emmett's xid8 horizon still lost events while its
-- checkpoint was the sequence position alone, because a sequence value is not ordered like
-- the transaction ids the horizon is about. Serialising appends on one lock
-- (pyeventsourcing, Commanded) is correct but caps throughput at one append at a time.
--
-- Instead the position *is* the writing transaction's id:
--
--   position = (pg_current_xact_id()::text::bigint << 20) | ordinal
--
-- where ordinal = 1, 2, ... counts the events written by that transaction (so at most
-- 2^20 - 1 per transaction; one append is capped at 10,000 events, and the store refuses an
-- append that would overflow the transaction's range). Positions are unique (no two
-- transactions share an xid) and ordered by (xid, ordinal). xid8 is the 64-bit,
-- epoch-extended id, so it never wraps; the bigint has room for 2^43 transactions.
--
-- Readers read only below the horizon of the statement's own snapshot:
--
--   position < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)
--
-- A snapshot's xmin is the oldest top-level xid still running when the snapshot was taken
-- (capped by its xmax): every transaction with a smaller xid has finished (committed, and so
-- visible to this very snapshot, or rolled back), and every transaction that finishes later
-- has an xid >= xmin: it was either running (so its xid is >= the minimum) or had no xid yet
-- and gets one >= the snapshot's xmax >= xmin. So once a reader has
-- returned a position, no event can ever commit below it: a checkpoint that is the position
-- alone is enough. Checked in the PostgreSQL source (15, and unchanged in later versions):
-- `pg_current_snapshot()` (utils/adt/xid8funcs.c) reads `GetActiveSnapshot()`, and for a
-- plain SELECT `PortalStart` (tcop/pquery.c) pushes a fresh snapshot as the active one,
-- hands that same snapshot to the executor as the query's snapshot, and
-- `PortalRunSelect` pushes it again around `ExecutorRun`. So in READ COMMITTED the xmin we
-- compare with comes from exactly the snapshot the statement reads rows with (no second,
-- later snapshot that could see a transaction commit between the two); in REPEATABLE READ
-- it is the transaction's snapshot, equally consistent.
--
-- Costs, documented rather than hidden:
-- * A rolled-back append leaves its positions unused. Nothing waits for them: the horizon
--   moves past an aborted xid as soon as it ends, so no hole stalls a reader.
-- * Any transaction in the *cluster* that holds an xid (any database, any table, including
--   an idle-in-transaction session that wrote something) holds the horizon back while it
--   runs: the feed is delayed, never wrong. Keep write transactions short; monitor
--   `age(backend_xid)` in pg_stat_activity.
-- * Events written by a transaction are invisible to feed reads inside that transaction.
-- * A logical dump restored into a new cluster would restart xids below the stored
--   positions; the store refuses to open such a database (see PgStore::connect) instead of
--   writing positions behind existing ones. pg_upgrade keeps the xid counter and is fine.

create table events (
    -- (xid << 20) | ordinal: see above. Never assigned by a default, always by the append.
    position       bigint      primary key check (position > 0),
    event_id       uuid        not null unique,
    stream_id      text        not null check (stream_id <> '' and length(stream_id) <= 200),
    -- The part of stream_id before the first '-' (or all of it), for filtered feeds.
    category       text        not null,
    -- 1, 2, 3, ... within the stream. The unique constraint is the arbiter of optimistic
    -- concurrency: two appends that both read version n and both write n + 1 cannot both
    -- commit; the loser's unique violation is mapped to Conflict by this constraint's name,
    -- never by the text of the error message.
    version        bigint      not null check (version > 0),
    event_type     text        not null,
    schema_version integer     not null,
    data           jsonb       not null,
    -- The Metadata struct (correlation, causation, actor, idempotency key) as JSON.
    metadata       jsonb       not null,
    recorded_at    timestamptz not null default now(),
    constraint events_stream_version_key unique (stream_id, version)
);

-- Feeds filtered by category read (category, position) in order.
create index events_category_position_idx on events (category, position);

-- One row per command that carried an idempotency key. The row is inserted *first* in the
-- append's transaction (insert ... on conflict do nothing), so a concurrent duplicate waits
-- on it and then sees the stored outcome instead of appending a second time. `outcome` is
-- null only inside that inserting transaction, which sets it before it commits; a rejected
-- append rolls the row back, leaving the key free for a corrected retry.
create table idempotency_keys (
    actor       text        not null,
    key         text        not null,
    fingerprint text        not null,
    -- The serialised AppendOutcome of the first call.
    outcome     jsonb,
    created_at  timestamptz not null default now(),
    primary key (actor, key)
);

-- Aggregate state keyed by the *state's* schema version: a snapshot written by older code
-- has another number and is simply not found, rather than misread.
create table snapshots (
    stream_id            text        not null,
    state_schema_version integer     not null,
    -- The stream version the state includes.
    version              bigint      not null check (version >= 0),
    state                jsonb       not null,
    saved_at             timestamptz not null default now(),
    primary key (stream_id, state_schema_version)
);

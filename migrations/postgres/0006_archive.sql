-- Retention and archiving (#15, part 3). Never edit once applied: add a new migration.
--
-- Archiving moves a stream's events out of `events` (the hot table every append, stream load
-- and unique check works on) into `archived_events`, in ONE transaction with the stream's
-- tombstone in `stream_archives`. Why a table and not compressed files: the move must be
-- atomic (a file written beside a transaction is either written before the commit, and then
-- orphaned by a rollback, or after it, and then lost by a crash), the global feed must stay
-- gap-free for every reader (the feed reads `events union all archived_events` below the
-- same horizon, in one statement, so one snapshot: a reader sees an event exactly once,
-- before or after the move), and a rebuild from position 0 must give the same read models.
-- Backups, replicas and permissions cover the archive with no extra machinery.
--
-- Positions never move and never get reused: an archived event keeps its position
-- ((xid << 20) | ordinal, see 0001), so a checkpoint stays valid across archiving.
--
-- Appends and archiving: the append statements refuse a stream with a tombstone (one
-- primary-key probe here), and archiving takes `share row exclusive` on `events` for its
-- short transaction, which waits for appends in flight and holds new ones back until it
-- commits: an append can then never have read the stream before the tombstone existed and
-- write after the events moved (READ COMMITTED takes the statement's snapshot after its
-- table lock). The lock is held for one stream's move, with a lock_timeout.

create table archived_events (
    position       bigint      primary key check (position > 0),
    event_id       uuid        not null,
    stream_id      text        not null,
    category       text        not null,
    version        bigint      not null check (version > 0),
    event_type     text        not null,
    schema_version integer     not null,
    data           json        not null,
    metadata       json        not null,
    recorded_at    timestamptz not null,
    -- When the row left the hot table.
    archived_at    timestamptz not null default now(),
    constraint archived_events_stream_version_key unique (stream_id, version)
);

-- Category feeds (rebuilds) read (category, position) in order, like the hot table's.
create index archived_events_category_position_idx on archived_events (category, position);

-- One row per stream that was archived whole (`whole`: appends are refused for ever, the
-- version is never reused) or truncated behind a snapshot (not `whole`: events at versions
-- <= `archived_through` live in `archived_events`, the stream goes on).
create table stream_archives (
    stream_id        text        primary key,
    whole            boolean     not null,
    -- Whole: the stream's last version. Truncated: the last version moved out.
    archived_through bigint      not null check (archived_through > 0),
    -- RETENTION, ADMIN or TRUNCATION.
    reason           text        not null,
    -- Who asked (the admin's id, or the retention worker's name).
    actor            text        not null,
    archived_at      timestamptz not null default now()
);

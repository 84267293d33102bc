-- Retention and archiving (#15, part 3); the Postgres edition explains it. SQLite has one
-- writer, so the move and the tombstone are one write transaction with nothing to race.
-- `events.position` is AUTOINCREMENT (0001): a position moved out is never handed out
-- again. Never edit once applied.

create table archived_events (
    position integer primary key,
    event_id text not null,
    stream_id text not null,
    category text not null,
    version integer not null check (version >= 1),
    event_type text not null,
    schema_version integer not null,
    data text not null,
    metadata text not null,
    recorded_at text not null,
    archived_at text not null default (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')
);

create unique index archived_events_stream_version_key on archived_events (stream_id, version);

create index archived_events_category_position_idx on archived_events (category, position);

create table stream_archives (
    stream_id text primary key,
    whole integer not null,
    archived_through integer not null check (archived_through > 0),
    reason text not null,
    actor text not null,
    archived_at text not null default (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')
);

-- The hot table's CHECK constraints go (#11). Never edit once applied: add a new migration.
--
-- Postgres prepares a table's CHECK expressions again for every statement that writes to it
-- (the executor parses and plans each constraint's stored expression once per execution,
-- not once per prepared plan), so on a one-row append they are a fixed cost, not a per-row
-- one. Measured with pgbench (1 client, fsync and synchronous_commit on, prepared, the
-- store's columns and indexes on an empty table, 4 alternating pairs of 5 s): without the
-- three checks 4,430-4,680 appends/s, with them 3,950-4,350, about 9% of every append.
--
-- What each check held is held where the value is made, before it reaches the table:
-- * position > 0: every append computes it as (xid << 20) + ordinal, ordinal >= 1;
-- * version > 0: every append writes expected version + n, n >= 1, expected >= 0;
-- * stream_id not empty, at most 200 characters: `AppendRequest::validate`, which every
--   append runs first (the archive log's own stream id is a constant that passes it).
-- The store is the only writer of this table. archived_events keeps its checks: rows reach
-- it only by archiving, where their cost is nothing beside the move.
alter table events
    drop constraint events_position_check,
    drop constraint events_stream_id_check,
    drop constraint events_version_check;

-- An archived or truncated stream keeps a marker at version 1 in the hot table (#11). Never
-- edit once applied: add a new migration.
--
-- Until now an append expecting a new stream read `stream_archives` to refuse a stream that
-- was archived or truncated (whose version 1 had left the hot table). That probe was the one
-- read of a second table in a cart's first append, and cost 8-11% of it (pgbench, 1 client,
-- fsync on, 7 alternating runs of 5 s: 3,620-3,910 appends/s with it, 4,080-4,280 without,
-- on an Intel Xeon VM; about 3% on an AMD EPYC one).
--
-- Instead, when archiving or truncating moves a stream's version 1, it leaves a marker in its
-- place: the same row at the negated position, with its event id, recorded_at and category,
-- event type `$archived`, no data (json null) and no metadata. The unique key
-- (stream_id, version) then refuses a new version 1 exactly as it refuses one for any stream
-- that exists, with no read. The marker never reaches a reader: feeds read positions above a
-- checkpoint (>= 0), stream reads and the `Exact(n)` checks say `position > 0`, and moving
-- events to the archive skips it. Its cost is one small row per archived stream, beside that
-- stream's row in `stream_archives`.
--
-- Streams archived or truncated before this migration get their marker here, from the
-- version 1 they moved to the archive.
insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at)
select -a.position, a.event_id, a.stream_id, a.category, 1, '$archived', 0, 'null', '{}', a.recorded_at
  from archived_events a
 where a.version = 1
on conflict do nothing;

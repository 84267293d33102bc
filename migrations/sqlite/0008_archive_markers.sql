-- Postgres keeps a marker at version 1 for each archived or truncated stream from this
-- version on (#11), so that an append expecting a new stream no longer reads stream_archives.
-- SQLite's appends run one at a time and read a stream's state in the same statement, where
-- that read costs next to nothing, so nothing changes here. The migration exists so that
-- both backends carry the same migration versions (store/tests/it/migrations.rs).
select 1;

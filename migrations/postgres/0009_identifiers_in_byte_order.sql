-- Stream ids and categories compare as bytes (collation "C") (#11). Never edit once applied:
-- add a new migration.
--
-- They are identifiers, not words: the store only asks whether two are equal and keeps
-- them in an index. Under a database's natural-language collation (even `C.UTF-8`, which
-- Postgres 15 does not treat as "C") every comparison in those indexes copied both strings
-- and called the C library's `strcoll`; the key (stream_id, version) of every append and
-- every stream read, the category feed's index, the archive's twins. Under "C" a comparison
-- is a `memcmp`. Measured on an Intel Xeon VM (PostgreSQL 15, one statement inserting
-- 100,000 events into a copy of the events table, three alternating pairs): 689-871 ms
-- against 725-931 ms, 5-8% of every inserted row.
--
-- Nothing a reader sees changes: equality is the same under every deterministic collation,
-- and the store never orders by a stream id in SQL (group commit sorts its rows in Rust,
-- which orders strings by bytes too). Comparisons with parameters and other text take the
-- column's collation, so every index is still used.
--
-- Only the indexes on these columns are rebuilt; the tables are not rewritten.
alter table events
    alter column stream_id type text collate "C",
    alter column category type text collate "C";
alter table archived_events
    alter column stream_id type text collate "C",
    alter column category type text collate "C";
alter table stream_archives alter column stream_id type text collate "C";
alter table snapshots alter column stream_id type text collate "C";

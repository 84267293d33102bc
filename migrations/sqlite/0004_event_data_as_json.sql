-- Postgres stores event data and metadata as json instead of jsonb from this version on (#11).
-- SQLite has always kept them as TEXT, as written; nothing changes here. The migration exists
-- so that both backends carry the same migration versions (store/tests/it/migrations.rs).
select 1;

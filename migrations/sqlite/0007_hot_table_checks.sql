-- Postgres drops the CHECK constraints of its events table from this version on (#11): it
-- prepares them again for every statement that writes there. SQLite compiles them into each
-- prepared statement once, where they cost next to nothing, so they stay; nothing changes
-- here. The migration exists so that both backends carry the same migration versions
-- (store/tests/it/migrations.rs).
select 1;

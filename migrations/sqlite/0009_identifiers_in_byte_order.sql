-- Postgres compares stream ids and categories as bytes from this version on (#11). SQLite
-- always did (its default collation is BINARY), so nothing changes here. The migration
-- exists so that both backends carry the same migration versions
-- (store/tests/it/migrations.rs).
select 1;

-- Leadership by lease (#16); the Postgres edition explains it. SQLite is one process and
-- needs no election: the column is never set here, and exists so that both backends'
-- checkpoint rows have the same columns. Never edit once applied.

alter table projection_checkpoints add column lease_expires_at text;

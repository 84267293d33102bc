-- Crypto-shredding of personal data (#15): see migrations/postgres/0005_data_keys.sql.
create table data_keys (
    subject    text    primary key,
    key_id     text    not null unique,
    wrapped    blob    not null,
    master_key text    not null,
    created_at text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

alter table orders add column personal_data text;
alter table orders add column personal_data_erased integer not null default 0;
alter table notifications add column sent_to text;

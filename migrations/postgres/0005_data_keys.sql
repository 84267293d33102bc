-- Crypto-shredding of personal data (#15). Never edit once applied.
--
-- Personal fields are sealed inside event data under a per-customer data key; erasing a
-- customer deletes their row here (in the transaction that appends PersonalDataErased), and
-- every copy of the ciphertext (events, snapshots, read models, the bus) becomes noise.
-- The store never holds a data key in the clear: `wrapped` is the key sealed by the
-- master key from configuration, `master_key` that master key's fingerprint (for rotation).
-- `key_id` is sealed into every ciphertext, so a key made after an erasure cannot open what
-- the erased one sealed.
create table data_keys (
    subject    text        primary key,
    key_id     uuid        not null unique,
    wrapped    bytea       not null,
    master_key text        not null,
    created_at timestamptz not null default now()
);

-- The orders read model keeps the sealed personal data (the API opens it when asked) and
-- whether the customer erased it since the order was placed.
alter table orders add column personal_data text;
alter table orders add column personal_data_erased boolean not null default false;
-- Whom a notification was sent to, sealed like the order's personal data.
alter table notifications add column sent_to text;

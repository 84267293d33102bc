-- cartsource read side, SQLite edition: checkpoints and read models of the `projections` crate.
-- Says the same thing as migrations/postgres/0002_read_models.sql (same tables, same column
-- names; store/tests/migrations.rs compares them), where the reasoning about fenced checkpoints
-- and generations is written out. Never edit once applied.
--
-- Types as in 0001: ids are TEXT (hyphenated lowercase uuid), times TEXT in the fixed-width
-- RFC 3339 UTC form 'YYYY-MM-DDTHH:MM:SS.ffffffZ', money and counts INTEGER.

create table projection_checkpoints (
    name text primary key,
    position integer not null default 0 check (position >= 0),
    state text not null default 'STOPPED',
    last_error text,
    error_position integer,
    generation integer not null default 1,
    rebuild_generation integer,
    rebuild_position integer,
    leader text,
    leader_epoch integer not null default 0,
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')
);

insert into projection_checkpoints (name) values
    ('carts'), ('orders'), ('products'), ('notifications'), ('analytics'), ('fulfilment'), ('inventory');

create table carts (
    generation integer not null,
    id text not null,
    customer_id text not null,
    status text not null,
    version integer not null,
    item_count integer not null,
    subtotal integer not null,
    order_id text,
    created_position integer not null,
    created_at text not null,
    updated_at text not null,
    primary key (generation, id)
);

create index carts_customer_idx on carts (generation, customer_id, created_position desc);
create index carts_status_updated_idx on carts (generation, status, updated_at);

create table cart_lines (
    generation integer not null,
    cart_id text not null,
    line_no integer not null,
    sku text not null,
    name text not null,
    quantity integer not null,
    unit_price integer not null,
    line_total integer not null,
    primary key (generation, cart_id, line_no)
);

create table orders (
    generation integer not null,
    id text not null,
    cart_id text not null,
    customer_id text not null,
    status text not null,
    version integer not null,
    total integer not null,
    cancel_reason text,
    placed_position integer not null,
    placed_at text not null,
    updated_at text not null,
    primary key (generation, id)
);

create index orders_customer_idx on orders (generation, customer_id, placed_position desc);

create table order_lines (
    generation integer not null,
    order_id text not null,
    line_no integer not null,
    sku text not null,
    name text not null,
    quantity integer not null,
    unit_price integer not null,
    line_total integer not null,
    primary key (generation, order_id, line_no)
);

create table products (
    generation integer not null,
    sku text not null,
    name text not null,
    price integer not null,
    on_hand integer not null,
    reserved integer not null,
    available integer not null,
    version integer not null,
    updated_at text not null,
    primary key (generation, sku)
);

create table notifications (
    generation integer not null,
    id text not null,
    customer_id text not null,
    kind text not null,
    message text not null,
    order_id text,
    created_position integer not null,
    created_at text not null,
    primary key (generation, id)
);

create index notifications_customer_idx on notifications (generation, customer_id, created_position desc);

create table analytics_skus (
    generation integer not null,
    sku text not null,
    add_events integer not null,
    units_added integer not null,
    units_ordered integer not null,
    revenue_ordered integer not null,
    primary key (generation, sku)
);

create table analytics_daily (
    generation integer not null,
    day text not null,
    carts_created integer not null,
    carts_checked_out integer not null,
    orders_placed integer not null,
    orders_shipped integer not null,
    orders_cancelled integer not null,
    revenue_placed integer not null,
    primary key (generation, day)
);

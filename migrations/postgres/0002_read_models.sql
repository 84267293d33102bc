-- cartsource read side, Postgres backend: checkpoints and read models of the `projections`
-- crate. Never edit once applied: add a new migration, in both folders (the SQLite edition says
-- the same thing with the same table and column names; store/tests/migrations.rs compares them).
--
-- ## Checkpoints
--
-- One row per consumer of the global feed (projection, reactor, publisher). A projection
-- commits its read-model change and its new `position` in ONE transaction, so a crash never
-- applies an event twice nor skips one. Every checkpoint write is fenced:
--
--   update projection_checkpoints set position = <new> ...
--    where name = $name and leader_epoch = $my_epoch and position = $old and generation = $gen
--
-- `leader_epoch` is bumped by each process that becomes leader of the consumer (after it took
-- the consumer's advisory lock), so a deposed leader whose lock connection died but whose pool
-- connections still work matches no row and can move the checkpoint neither back nor forward.
--
-- ## Generations (zero-downtime rebuilds)
--
-- Every read-model row carries the `generation` it was built for; readers only see rows of
-- the checkpoint's current `generation`. A rebuild fills `rebuild_generation` from position 0
-- (its own progress in `rebuild_position`) while the current generation keeps serving and
-- following the feed; once it has caught up, one transaction makes it the current generation
-- (checkpoint and generation together), and the old rows are deleted afterwards. No DDL at
-- run time, no table swap.

create table projection_checkpoints (
    name               text        primary key,
    -- Last global position applied (store::Position; 0 = nothing yet).
    position           bigint      not null default 0 check (position >= 0),
    -- RUNNING, CATCHING_UP, REBUILDING, STOPPED or FAILED.
    state              text        not null default 'STOPPED',
    -- Why the consumer is FAILED, and the position of the event it could not apply.
    last_error         text,
    error_position     bigint,
    -- The generation of read-model rows readers see.
    generation         bigint      not null default 1,
    -- Set while a rebuild builds this generation; null otherwise.
    rebuild_generation bigint,
    rebuild_position   bigint,
    -- Worker name of the process that leads this consumer, and the fencing token it holds.
    leader             text,
    leader_epoch       bigint      not null default 0,
    updated_at         timestamptz not null default now()
);

insert into projection_checkpoints (name) values
    ('carts'), ('orders'), ('products'), ('notifications'), ('analytics'), ('fulfilment'), ('inventory');

-- One row per cart. `created_position` (the position of CartCreated) orders "newest first"
-- and is the pagination cursor: unique and stable, unlike a timestamp.
create table carts (
    generation       bigint      not null,
    id               uuid        not null,
    customer_id      text        not null,
    -- OPEN or CHECKED_OUT.
    status           text        not null,
    -- Number of events in the cart's stream.
    version          bigint      not null,
    item_count       bigint      not null,
    -- Minor units.
    subtotal         bigint      not null,
    order_id         uuid,
    created_position bigint      not null,
    created_at       timestamptz not null,
    updated_at       timestamptz not null,
    primary key (generation, id)
);

-- "My carts, newest first" (optionally by status) reads this index in order.
create index carts_customer_idx on carts (generation, customer_id, created_position desc);
-- Abandoned carts (analytics): open carts by last change.
create index carts_status_updated_idx on carts (generation, status, updated_at);

create table cart_lines (
    generation bigint not null,
    cart_id    uuid   not null,
    -- Position of the line in the cart (the order skus were first added in).
    line_no    bigint not null,
    sku        text   not null,
    name       text   not null,
    quantity   bigint not null,
    unit_price bigint not null,
    line_total bigint not null,
    primary key (generation, cart_id, line_no)
);

create table orders (
    generation      bigint      not null,
    id              uuid        not null,
    cart_id         uuid        not null,
    customer_id     text        not null,
    -- PLACED, PREPARING, SHIPPED or CANCELLED.
    status          text        not null,
    version         bigint      not null,
    total           bigint      not null,
    cancel_reason   text,
    -- Position of OrderPlaced: "newest first" order and cursor.
    placed_position bigint      not null,
    placed_at       timestamptz not null,
    updated_at      timestamptz not null,
    primary key (generation, id)
);

create index orders_customer_idx on orders (generation, customer_id, placed_position desc);

create table order_lines (
    generation bigint not null,
    order_id   uuid   not null,
    line_no    bigint not null,
    sku        text   not null,
    name       text   not null,
    quantity   bigint not null,
    unit_price bigint not null,
    line_total bigint not null,
    primary key (generation, order_id, line_no)
);

-- The catalog with stock; paginated by sku (the primary key's order).
create table products (
    generation bigint      not null,
    sku        text        not null,
    name       text        not null,
    price      bigint      not null,
    on_hand    bigint      not null,
    -- Units held for placed orders that have not shipped or been cancelled.
    reserved   bigint      not null,
    -- on_hand - reserved, never negative.
    available  bigint      not null,
    version    bigint      not null,
    updated_at timestamptz not null,
    primary key (generation, sku)
);

-- What customers are told about their orders. `id` is derived from the triggering event's id,
-- so a replayed event can never notify twice.
create table notifications (
    generation       bigint      not null,
    id               uuid        not null,
    customer_id      text        not null,
    -- ORDER_PLACED, ORDER_SHIPPED, ORDER_CANCELLED.
    kind             text        not null,
    message          text        not null,
    order_id         uuid,
    -- Position of the triggering event: "newest first" order and cursor.
    created_position bigint      not null,
    created_at       timestamptz not null,
    primary key (generation, id)
);

create index notifications_customer_idx on notifications (generation, customer_id, created_position desc);

-- Analytics, per sku: what is put in carts and what is bought.
create table analytics_skus (
    generation      bigint not null,
    sku             text   not null,
    -- ItemAddedToCart events and the units they added.
    add_events      bigint not null,
    units_added     bigint not null,
    -- Units and revenue (minor units) of placed orders (cancellations are counted per day).
    units_ordered   bigint not null,
    revenue_ordered bigint not null,
    primary key (generation, sku)
);

-- Analytics, per UTC day (YYYY-MM-DD, the day the event was recorded).
create table analytics_daily (
    generation        bigint not null,
    day               text   not null,
    carts_created     bigint not null,
    carts_checked_out bigint not null,
    orders_placed     bigint not null,
    orders_shipped    bigint not null,
    orders_cancelled  bigint not null,
    -- Total of the orders placed that day, minor units.
    revenue_placed    bigint not null,
    primary key (generation, day)
);

//! Helpers shared by the projections tests: fresh databases, commands through the one
//! command loop, and a macro that runs a test against each backend.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use commands::{CartAggregate, CommandContext, Commands, OrderAggregate, ProductAggregate};
use domain::{CartCommand, CartId, CustomerId, Money, OrderCommand, OrderId, ProductCommand, Sku};
use projections::{Projections, ProjectionsConfig};
use store::{Database, EventStore, Position};
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(20);

pub async fn postgres() -> Database {
    let db = store::testing::postgres().await;
    store::open(&db.url).await.unwrap_or_else(|e| panic!("open Postgres: {e:?}"))
}

pub async fn sqlite() -> Database {
    store::open(&store::testing::sqlite())
        .await
        .unwrap_or_else(|e| panic!("open SQLite: {e:?}"))
}

/// Runs `async fn $name(db: Database)` of the enclosing module against both backends.
#[macro_export]
macro_rules! backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::postgres().await).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::sqlite().await).await;
                }
            )+
        }
    };
}

pub fn ctx(actor: &str) -> CommandContext {
    CommandContext {
        actor: actor.to_owned(),
        ..CommandContext::default()
    }
}

pub fn store(db: &Database) -> Arc<dyn EventStore> {
    db.store()
}

/// The process's live feed, as the server makes it (one per process; tests that model two
/// processes make one each).
pub fn live(db: &Database) -> store::LiveFeed {
    store::LiveFeed::start(db.store())
}

/// A handle that runs the workers inline (`run_until_caught_up`).
pub fn inline(db: &Database, run_reactors: bool) -> Projections {
    Projections::new(
        db.clone(),
        ProjectionsConfig {
            run_reactors,
            worker_name: "test".into(),
            ..ProjectionsConfig::default()
        },
    )
}

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("valid sku")
}

pub async fn register(db: &Database, sku_name: &str, price: i64, stock: i64) -> Position {
    let command = ProductCommand::Register {
        sku: sku(sku_name),
        name: format!("Product {sku_name}"),
        price: Money::from_minor(price),
        initial_stock: stock,
    };
    Commands::new(db.store())
        .execute::<ProductAggregate, _, _>(&ctx("admin"), &sku(sku_name).stream_id(), None, move |s| {
            domain::product::decide(s, command.clone())
        })
        .await
        .expect("register product")
        .position
}

pub async fn receive(db: &Database, sku_name: &str, quantity: i64) -> Position {
    Commands::new(db.store())
        .execute::<ProductAggregate, _, _>(&ctx("admin"), &sku(sku_name).stream_id(), None, move |s| {
            domain::product::decide(s, ProductCommand::ReceiveStock { quantity })
        })
        .await
        .expect("receive stock")
        .position
}

pub async fn create_cart(db: &Database, customer: &str) -> CartId {
    let id = CartId::from_uuid(Uuid::now_v7());
    let command = CartCommand::Create {
        cart_id: id,
        customer_id: CustomerId::parse(customer).expect("customer"),
    };
    Commands::new(db.store())
        .execute::<CartAggregate, _, _>(&ctx(customer), &id.stream_id(), None, move |s| domain::cart::decide(s, command.clone()))
        .await
        .expect("create cart");
    id
}

pub async fn cart_command(db: &Database, cart: CartId, command: CartCommand) -> Position {
    Commands::new(db.store())
        .execute::<CartAggregate, _, _>(&ctx("customer"), &cart.stream_id(), None, move |s| {
            domain::cart::decide(s, command.clone())
        })
        .await
        .expect("cart command")
        .position
}

pub async fn add(db: &Database, cart: CartId, sku_name: &str, quantity: i64, price: i64) -> Position {
    cart_command(
        db,
        cart,
        CartCommand::AddItem {
            sku: sku(sku_name),
            quantity,
            name: format!("Product {sku_name}"),
            unit_price: Money::from_minor(price),
        },
    )
    .await
}

pub async fn place(db: &Database, cart: CartId) -> (OrderId, Position) {
    let order_id = OrderId::from_uuid(Uuid::now_v7());
    // Only the cart's owner may place its order.
    let owner = commands::load::<CartAggregate>(db.store().as_ref(), &cart.stream_id())
        .await
        .expect("load the cart")
        .state
        .map(|c| c.customer_id.as_str().to_owned())
        .unwrap_or_default();
    let placed = Commands::new(db.store())
        .place_order(&ctx(&owner), cart, None, order_id, None)
        .await
        .expect("place order");
    (order_id, placed.order.position)
}

pub async fn order_command(db: &Database, order: OrderId, command: OrderCommand) -> Position {
    Commands::new(db.store())
        .execute::<OrderAggregate, _, _>(&ctx("admin"), &order.stream_id(), None, move |s| {
            domain::order::decide(s, command.clone())
        })
        .await
        .expect("order command")
        .position
}

/// Events of a stream, as (type, actor).
pub async fn stream_types(db: &Database, stream: &str) -> Vec<String> {
    db.store()
        .read_stream(stream, 1, 10_000)
        .await
        .expect("read stream")
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

/// Runs a statement directly (test setup and fault injection).
pub async fn sql(db: &Database, statement: &str) {
    match db {
        Database::Postgres(s) => {
            sqlx::raw_sql(statement)
                .execute(s.pool())
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        Database::Sqlite(s) => {
            sqlx::raw_sql(statement)
                .execute(&s.pool().writer)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }
}

/// One text column of a query (e.g. a checksum).
pub async fn text(db: &Database, pg: &str, lite: &str) -> String {
    match db {
        Database::Postgres(s) => sqlx::query_scalar::<_, String>(pg)
            .fetch_one(s.pool())
            .await
            .unwrap_or_else(|e| panic!("{pg}: {e}")),
        Database::Sqlite(s) => sqlx::query_scalar::<_, String>(lite)
            .fetch_one(&s.pool().reader)
            .await
            .unwrap_or_else(|e| panic!("{lite}: {e}")),
    }
}

/// Every row a model serves, as one string (the "checksum" rebuild tests compare).
pub async fn digest(db: &Database, model: &str) -> String {
    let tables: &[(&str, &str)] = match model {
        "carts" => &[
            (
                "carts",
                "id, customer_id, status, version, item_count, subtotal, order_id, created_position, created_at, updated_at",
            ),
            ("cart_lines", "cart_id, line_no, sku, name, quantity, unit_price, line_total"),
        ],
        "orders" => &[
            (
                "orders",
                "id, cart_id, customer_id, status, version, total, cancel_reason, personal_data, personal_data_erased, placed_position, \
                 placed_at, updated_at",
            ),
            ("order_lines", "order_id, line_no, sku, name, quantity, unit_price, line_total"),
        ],
        "products" => &[("products", "sku, name, price, on_hand, reserved, available, version, updated_at")],
        "notifications" => &[(
            "notifications",
            "id, customer_id, kind, message, order_id, sent_to, created_position, created_at",
        )],
        "analytics" => &[
            ("analytics_skus", "sku, add_events, units_added, units_ordered, revenue_ordered"),
            (
                "analytics_daily",
                "day, carts_created, carts_checked_out, orders_placed, orders_shipped, orders_cancelled, revenue_placed",
            ),
        ],
        other => panic!("no digest for {other}"),
    };
    let mut out = String::new();
    for (table, columns) in tables {
        let serving = format!("(select generation from projection_checkpoints where name = '{model}')");
        let pg = format!(
            "select coalesce(string_agg(t::text, '|' order by t::text), '') from (select {columns} from {table} where generation = {serving}) t"
        );
        let concat: Vec<String> = columns.split(", ").map(|c| format!("coalesce({c}, '')")).collect();
        let lite = format!(
            "select coalesce(group_concat(x, '|'), '') from (select {} as x from {table} where generation = {serving} order by x)",
            concat.join(" || ',' || ")
        );
        out.push_str(table);
        out.push(':');
        out.push_str(&text(db, &pg, &lite).await);
        out.push('\n');
    }
    out
}

/// Waits (bounded) until `check` holds, re-checking every few milliseconds.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A little of everything: carts with lines, orders in every state, stock moves.
pub async fn shop_history(db: &Database, carts: usize) {
    register(db, "tea", 450, 1000).await;
    register(db, "mug", 1200, 1000).await;
    register(db, "pot", 3000, 1000).await;
    for i in 0..carts {
        let customer = format!("customer-{}", i % 3);
        let cart = create_cart(db, &customer).await;
        add(db, cart, "tea", 1 + (i as i64 % 4), 450).await;
        add(db, cart, "mug", 1, 1200).await;
        if i % 2 == 0 {
            cart_command(
                db,
                cart,
                CartCommand::ChangeQuantity {
                    sku: sku("mug"),
                    quantity: 2,
                },
            )
            .await;
        }
        if i % 3 == 0 {
            add(db, cart, "pot", 1, 3000).await;
            cart_command(db, cart, CartCommand::Remove { sku: sku("tea") }).await;
        }
        if i % 4 != 3 {
            let (order, _) = place(db, cart).await;
            match i % 4 {
                0 => {
                    order_command(db, order, OrderCommand::StartPreparation).await;
                    order_command(db, order, OrderCommand::Ship).await;
                }
                1 => {
                    order_command(
                        db,
                        order,
                        OrderCommand::Cancel {
                            reason: Some(format!("reason {i}")),
                        },
                    )
                    .await;
                }
                _ => {}
            }
        }
    }
    receive(db, "pot", 5).await;
}

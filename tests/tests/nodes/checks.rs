//! What must hold after any failure, read from the database the cluster shares: checkpoints
//! never move back, read models equal a rebuild of themselves, every reactor effect
//! happened exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::harness::{CheckpointRow, Cluster, CHECKPOINTS};

/// Samples every checkpoint every 20 ms until stopped; returns every move backwards of a
/// fencing token, or of a position within one generation or into the next.
pub fn watch_checkpoints(db: PgPool, mut stop: watch::Receiver<bool>) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut last: HashMap<String, CheckpointRow> = HashMap::new();
        let mut backwards = Vec::new();
        while !*stop.borrow() {
            let rows: Vec<CheckpointRow> = sqlx::query_as(CHECKPOINTS).fetch_all(&db).await.unwrap_or_default();
            for row in rows {
                if let Some(before) = last.get(&row.name) {
                    if row.epoch < before.epoch || row.generation < before.generation || row.position < before.position {
                        backwards.push(format!("{before:?} -> {row:?}"));
                    }
                }
                last.insert(row.name.clone(), row);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop.changed() => {}
            }
        }
        backwards
    })
}

/// The tables of each read model, and the columns that make up its content.
const MODELS: [(&str, &[(&str, &str)]); 5] = [
    (
        "carts",
        &[
            (
                "carts",
                "id, customer_id, status, version, item_count, subtotal, order_id, created_position, created_at, updated_at",
            ),
            ("cart_lines", "cart_id, line_no, sku, name, quantity, unit_price, line_total"),
        ],
    ),
    (
        "orders",
        &[
            (
                "orders",
                "id, cart_id, customer_id, status, version, total, cancel_reason, placed_position, placed_at, updated_at",
            ),
            ("order_lines", "order_id, line_no, sku, name, quantity, unit_price, line_total"),
        ],
    ),
    (
        "products",
        &[("products", "sku, name, price, on_hand, reserved, available, version, updated_at")],
    ),
    (
        "notifications",
        &[("notifications", "id, customer_id, kind, message, order_id, created_position, created_at")],
    ),
    (
        "analytics",
        &[
            ("analytics_skus", "sku, add_events, units_added, units_ordered, revenue_ordered"),
            (
                "analytics_daily",
                "day, carts_created, carts_checked_out, orders_placed, orders_shipped, orders_cancelled, revenue_placed",
            ),
        ],
    ),
];

/// Every row a model serves (its current generation), as one string.
async fn digest(db: &PgPool, model: &str, tables: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (table, columns) in tables {
        // Table and column names are this file's constants, the model name is bound.
        let sql = format!(
            "select coalesce(string_agg(t::text, '|' order by t::text), '') from (select {columns} from {table} \
             where generation = (select generation from projection_checkpoints where name = $1)) t"
        );
        let text: String = sqlx::query_scalar(&sql).bind(model).fetch_one(db).await.expect("digest");
        out.push_str(&format!("{table}:{text}\n"));
    }
    out
}

/// Rebuilds every read model through the API and asserts that each equals what it served
/// before (the cluster must be caught up and quiet).
pub async fn read_models_equal_a_rebuild(cluster: &Cluster, admin: &Client, base_url: &str) {
    for (model, tables) in MODELS {
        let before = digest(&cluster.db, model, tables).await;
        assert!(before.len() > 40, "{model} serves nothing: {before}");
        let generation: i64 = sqlx::query_scalar("select generation from projection_checkpoints where name = $1")
            .bind(model)
            .fetch_one(&cluster.db)
            .await
            .expect("generation");
        admin
            .must(
                base_url,
                "mutation($name: String!) { rebuildProjection(name: $name) { state } }",
                json!({"name": model}),
            )
            .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let swapped: bool =
                sqlx::query_scalar("select generation > $2 and rebuild_generation is null from projection_checkpoints where name = $1")
                    .bind(model)
                    .bind(generation)
                    .fetch_one(&cluster.db)
                    .await
                    .expect("rebuild state");
            if swapped {
                break;
            }
            assert!(Instant::now() < deadline, "the rebuild of {model} did not finish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = digest(&cluster.db, model, tables).await;
        assert!(before == after, "{model} differs from its rebuild");
    }
}

/// One count per row of a check query; each must be exactly one.
async fn all_once(db: &PgPool, what: &str, sql: &str) -> usize {
    let counts: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(db).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let wrong: Vec<&(String, i64)> = counts.iter().filter(|(_, n)| *n != 1).collect();
    assert!(wrong.is_empty(), "{what}: not exactly once: {wrong:?}");
    counts.len()
}

/// Every reactor effect happened exactly once; returns (orders, cancelled orders).
pub async fn effects_happened_once(db: &PgPool) -> (usize, usize) {
    // fulfilment: one OrderPreparationStarted per placed order; none for an order cancelled
    // before fulfilment got to it (the domain refuses to prepare it then), counted as one.
    let orders = all_once(
        db,
        "preparation started per order",
        "select p.stream_id, case when count(s.position) = 0 and exists (select 1 from events c \
                where c.stream_id = p.stream_id and c.event_type = 'OrderCancelled') then 1 else count(s.position) end \
           from events p left join events s on s.stream_id = p.stream_id and s.event_type = 'OrderPreparationStarted' \
          where p.event_type = 'OrderPlaced' group by p.stream_id",
    )
    .await;
    // placeOrder: one StockReserved per order and line.
    all_once(
        db,
        "stock reserved per order line",
        "select p.stream_id || ' ' || (l->>'sku'), \
                (select count(*) from events r where r.event_type = 'StockReserved' \
                   and r.stream_id = 'product-' || (l->>'sku') and r.data->>'order_id' = p.data->>'order_id') \
           from events p cross join json_array_elements(p.data->'lines') l where p.event_type = 'OrderPlaced'",
    )
    .await;
    // inventory: one StockReleased per cancelled order and line.
    let cancelled = all_once(
        db,
        "stock released per cancelled order line",
        "select p.stream_id || ' ' || (l->>'sku'), \
                (select count(*) from events r where r.event_type = 'StockReleased' \
                   and r.stream_id = 'product-' || (l->>'sku') and r.data->>'order_id' = p.data->>'order_id') \
           from events c join events p on p.stream_id = c.stream_id and p.event_type = 'OrderPlaced' \
          cross join json_array_elements(p.data->'lines') l where c.event_type = 'OrderCancelled'",
    )
    .await;
    // notifications: one per order event it notifies of, keyed by the event.
    all_once(
        db,
        "notification per order event",
        "select e.event_id::text, (select count(*) from notifications n where n.id = e.event_id \
            and n.generation = (select generation from projection_checkpoints where name = 'notifications')) \
           from events e where e.event_type in ('OrderPlaced', 'OrderShipped', 'OrderCancelled')",
    )
    .await;
    (orders, cancelled)
}

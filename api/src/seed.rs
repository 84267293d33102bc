//! The demo catalog registered on the first start in development with an empty store,
//! so the playground has something to show. It goes through the command loop like any
//! admin command (actor `seed`), with one idempotency key per product, so two processes
//! starting together on one database register each product once.

use commands::{CommandContext, CommandError, Commands, ProductAggregate};
use domain::{Money, ProductCommand, Sku};
use std::sync::Arc;

use store::EventStore;

/// (sku, name, price, initial stock).
pub const CATALOG: &[(&str, &str, &str, i64)] = &[
    ("apple", "Apple", "0.50", 120),
    ("banana", "Banana", "0.25", 150),
    ("coffee-1kg", "Coffee beans, 1 kg", "18.90", 25),
    ("tea-green-500g", "Green tea, 500 g", "7.50", 40),
    ("mug", "Mug", "9.99", 12),
];

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read the event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot register {sku}: {source}")]
    Command { sku: &'static str, source: CommandError },
    #[error("the seed catalog is invalid at {sku}: {source}")]
    Invalid { sku: &'static str, source: domain::DomainError },
}

/// Registers the catalog when the store holds no event yet; returns how many products
/// were registered (0 when the store was not empty).
pub async fn seed_if_empty(store: &Arc<dyn EventStore>) -> Result<usize, SeedError> {
    let commands = Commands::new(store.clone());
    if store.head_position().await?.0 > 0 {
        return Ok(0);
    }
    for (sku_text, name, price, stock) in CATALOG {
        let invalid = |source| SeedError::Invalid { sku: sku_text, source };
        let sku = Sku::parse(sku_text).map_err(invalid)?;
        let price = Money::parse_price(price).map_err(invalid)?;
        let command = ProductCommand::Register {
            sku: sku.clone(),
            name: (*name).to_owned(),
            price,
            initial_stock: *stock,
        };
        let ctx = CommandContext {
            actor: "seed".to_owned(),
            idempotency_key: Some(format!("seed-{sku_text}")),
            fingerprint: format!("{command:?}"),
            ..CommandContext::default()
        };
        commands
            .execute::<ProductAggregate, _, _>(&ctx, &sku.stream_id(), None, move |state| domain::product::decide(state, command.clone()))
            .await
            .map_err(|source| SeedError::Command { sku: sku_text, source })?;
    }
    tracing::info!(products = CATALOG.len(), "seeded the demo catalog (turn off with --no-seed)");
    Ok(CATALOG.len())
}

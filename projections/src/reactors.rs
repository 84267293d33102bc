//! Reactors: consumers whose effect is a command.
//!
//! * fulfilment: OrderPlaced -> StartPreparation (the order moves to PREPARING).
//! * inventory: OrderCancelled -> release each line's reserved stock; OrderShipped -> turn
//!   each line's reservation into a shipment (`domain::decide_inventory_commands`, decided
//!   from the order's final state).
//! * notification: a read model (`model::notifications`), since its effect is a row.
//!
//! Commands go through the `commands` crate ([`Commands::execute`]) with the reactor's name as actor, the
//! triggering event as causation, and an idempotency key derived from the triggering event's
//! id and the target stream. The store keeps the first outcome of each key, so a replay, a
//! crash between the command and the checkpoint, or two leaders for a moment act once. A
//! command the domain refuses (an order cancelled before fulfilment picked it up) is a
//! business outcome, logged and skipped, not a failure of the reactor.

use std::sync::Arc;

use commands::{decode, load, CommandContext, CommandError, Commands, OrderAggregate, ProductAggregate};
use domain::{OrderCommand, OrderEvent};
use store::{EventStore, RecordedEvent};

use crate::error::ProjectionError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reactor {
    Fulfilment,
    Inventory,
}

impl Reactor {
    pub const ALL: [Reactor; 2] = [Reactor::Fulfilment, Reactor::Inventory];

    pub fn name(self) -> &'static str {
        match self {
            Reactor::Fulfilment => "fulfilment",
            Reactor::Inventory => "inventory",
        }
    }

    pub fn from_name(name: &str) -> Option<Reactor> {
        Reactor::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn categories(self) -> &'static [&'static str] {
        &["order"]
    }

    /// The command context for one command caused by `event` on `stream`: the same event
    /// and stream always give the same idempotency key. The command continues the event's
    /// trace (under the reaction's span when spans are exported).
    pub fn context(self, event: &RecordedEvent, stream: &str) -> CommandContext {
        let key = format!("{}:{stream}", event.event_id);
        CommandContext {
            actor: self.name().to_owned(),
            correlation_id: event.metadata.correlation_id,
            causation_id: Some(event.event_id),
            idempotency_key: Some(key.clone()),
            fingerprint: key,
            budget: None,
            trace: event.metadata.trace.clone(),
        }
    }

    /// Acts on one event (anything this reactor does not handle is ignored). A reactor
    /// issues at most a few commands per event, each on a stream it loads once, so it
    /// uses a fresh [`Commands`] (no cache to keep warm); expectations and re-deciding
    /// keep it correct next to the API's writers.
    pub async fn react(self, store: &Arc<dyn EventStore>, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let commands = Commands::new(store.clone());
        if event.category() != "order" {
            return Ok(());
        }
        let order_event: OrderEvent = decode(event).map_err(|e| ProjectionError::Event {
            position: event.position,
            event_type: event.event_type.clone(),
            reason: e.to_string(),
        })?;
        match (self, order_event) {
            (Reactor::Fulfilment, OrderEvent::OrderPlaced { .. }) => {
                let ctx = self.context(event, &event.stream_id);
                let result = commands
                    .execute::<OrderAggregate, _, _>(&ctx, &event.stream_id, None, |order| {
                        domain::order::decide(order, OrderCommand::StartPreparation)
                    })
                    .await;
                settle(self, event, result.map(|_| ()))
            }
            (Reactor::Inventory, OrderEvent::OrderCancelled { .. } | OrderEvent::OrderShipped {}) => {
                let Some(order) = load::<OrderAggregate>(store.as_ref(), &event.stream_id).await?.state else {
                    return Ok(());
                };
                for (sku, command) in domain::decide_inventory_commands(&order) {
                    let stream = sku.stream_id();
                    let ctx = self.context(event, &stream);
                    let result = commands
                        .execute::<ProductAggregate, _, _>(&ctx, &stream, None, move |product| domain::product::decide(product, command.clone()))
                        .await;
                    settle(self, event, result.map(|_| ()))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A refused command is logged and skipped; anything else is the reactor's error.
fn settle(reactor: Reactor, event: &RecordedEvent, result: Result<(), CommandError>) -> Result<(), ProjectionError> {
    match result {
        Ok(()) => Ok(()),
        Err(CommandError::Domain(e)) => {
            tracing::info!(reactor = reactor.name(), stream = %event.stream_id, position = %event.position, reason = %e, "command refused; nothing to do");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

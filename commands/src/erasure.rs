//! Erasing a customer's personal data (GDPR art. 17): their data key is deleted in the
//! transaction that appends `PersonalDataErased` to `customer-<id>` (`KeyStore::shred`),
//! so the erasure and its record commit together or not at all.
//!
//! Idempotent: erasing again answers the earlier erasure unless personal data was sealed
//! for the customer since (then that is erased too). Not through a mailbox: erasures are
//! rare and the customer stream has no other writer, so a plain optimistic loop will do.

use domain::customer::{self, CustomerCommand};
use domain::CustomerId;
use store::{AppendRequest, ExpectedVersion, Position, StoreError};
use time::OffsetDateTime;
use tokio::time::Instant;
use vault::Vault;

use crate::aggregate::{encode, load, CustomerAggregate};
use crate::retry::Backoff;
use crate::{CommandContext, CommandError, Commands};

/// A customer's erasure as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub customer_id: CustomerId,
    /// When the `PersonalDataErased` answering this request was recorded.
    pub erased_at: OffsetDateTime,
    /// Its position in the global log (for read-your-writes on read models).
    pub position: Position,
    /// `true` when an earlier erasure answered and nothing was appended.
    pub repeated: bool,
}

impl Commands {
    pub async fn erase_personal_data(&self, ctx: &CommandContext, vault: &Vault, customer_id: &CustomerId) -> Result<Erasure, CommandError> {
        let store = self.store().as_ref();
        let stream = customer_id.stream_id();
        let deadline = ctx.deadline();
        let ctx = &ctx.traced();
        let mut backoff = Backoff::new();
        loop {
            let loaded = load::<CustomerAggregate>(store, &stream).await?;
            let command = CustomerCommand::ErasePersonalData {
                customer_id: customer_id.clone(),
                holds_data_key: vault.holds_key(customer_id).await?,
            };
            let events = customer::decide(&loaded.state, command)?;
            if events.is_empty() {
                return self.recorded(customer_id, loaded.version, true).await;
            }
            let metadata = ctx.metadata();
            let encoded = events.iter().map(|e| encode(e, &metadata)).collect();
            // Exact(0) expects no stream, as every command's first append does.
            let request = AppendRequest::single(&stream, ExpectedVersion::Exact(loaded.version), encoded);
            match vault.keys().shred(customer_id.as_str(), request).await {
                Ok(_) => return self.recorded(customer_id, loaded.version + events.len() as u64, false).await,
                Err(StoreError::Conflict { .. }) if Instant::now() < deadline => backoff.wait(deadline).await,
                Err(StoreError::Conflict { .. }) => return Err(CommandError::Timeout),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The erasure event at `version` of the customer's stream.
    async fn recorded(&self, customer_id: &CustomerId, version: u64, repeated: bool) -> Result<Erasure, CommandError> {
        let stream = customer_id.stream_id();
        let event = self.store().read_stream(&stream, version, 1).await?.pop();
        let event = event.ok_or_else(|| StoreError::Corrupt(format!("{stream} has no event at version {version}")))?;
        Ok(Erasure {
            customer_id: customer_id.clone(),
            erased_at: event.recorded_at,
            position: event.position,
            repeated,
        })
    }
}

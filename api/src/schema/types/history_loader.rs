//! The `DataLoader` behind `Cart.history`: one batch of stream reads for all the carts
//! resolved together.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::Context;
use futures::future::try_join_all;
use store::RecordedEvent as StoreEvent;

use crate::error::ApiError;

/// One `Cart.history` page to read: a range of one cart stream. The range is part of
/// the key so each cart's page keeps its own `first`/`after`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistoryKey {
    pub stream_id: String,
    pub from_version: u64,
    pub limit: usize,
}

/// Reads the history pages of all carts resolved together (e.g. a page of `me.carts`)
/// in one batch instead of one store read per cart, one after the other. The store only
/// reads one stream per call, so a batch runs its per-stream reads concurrently.
pub struct HistoryLoader {
    store: Arc<dyn store::EventStore>,
}

impl HistoryLoader {
    pub fn new(store: Arc<dyn store::EventStore>) -> Self {
        HistoryLoader { store }
    }
}

impl Loader<HistoryKey> for HistoryLoader {
    type Value = Vec<StoreEvent>;
    type Error = ApiError;

    async fn load(&self, keys: &[HistoryKey]) -> Result<HashMap<HistoryKey, Self::Value>, Self::Error> {
        let reads = keys.iter().map(|key| async move {
            let events = self.store.read_stream(&key.stream_id, key.from_version, key.limit).await?;
            Ok::<_, ApiError>((key.clone(), events))
        });
        Ok(try_join_all(reads).await?.into_iter().collect())
    }
}

pub(super) fn history_loader<'a>(ctx: &Context<'a>) -> Result<&'a DataLoader<HistoryLoader>, ApiError> {
    ctx.data_opt::<DataLoader<HistoryLoader>>()
        .ok_or_else(|| ApiError::internal("the schema was built without the history loader"))
}

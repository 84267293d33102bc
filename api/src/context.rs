//! What every resolver shares: the event store, the process's live feed and the read
//! side. Built once by the server and handed to
//! [`crate::schema::build_schema`].

use std::sync::Arc;
use std::time::Duration;

use store::{EventStore, LiveFeed};

/// How long a read with `minPosition` waits for its projection before answering
/// CONSISTENCY_TIMEOUT.
pub const DEFAULT_CONSISTENCY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ApiContext {
    pub store: Arc<dyn EventStore>,
    /// The one reader of committed events that every subscription of this process
    /// shares: subscriptions wait on it in memory, holding no database connection.
    pub live: LiveFeed,
    pub projections: projections::Projections,
    /// Bound on `minPosition` waits.
    pub consistency_timeout: Duration,
    /// How long a command without `expectedVersion` keeps retrying after conflicts.
    pub command_budget: Duration,
    /// Seals personal data on placeOrder and opens it for `Order` and `Notification`.
    pub vault: vault::Vault,
}

impl ApiContext {
    /// Starts the process's live feed (so call it once, within the Tokio runtime).
    pub fn new(db: store::Database, projections: projections::Projections, master_key: vault::MasterKey) -> Self {
        let live = LiveFeed::start(db.store());
        let vault = vault::Vault::new(db.keys(), master_key, vec![]);
        ApiContext::with_live(db, projections, live, vault)
    }

    /// With the process's live feed made by the caller (the server shares it with the
    /// projection workers) and its vault of personal data.
    pub fn with_live(db: store::Database, projections: projections::Projections, live: LiveFeed, vault: vault::Vault) -> Self {
        ApiContext {
            store: db.store(),
            live,
            projections,
            consistency_timeout: DEFAULT_CONSISTENCY_TIMEOUT,
            command_budget: commands::DEFAULT_BUDGET,
            vault,
        }
    }

    pub fn read(&self) -> &projections::ReadModels {
        self.projections.read()
    }
}

/// The id of the HTTP request (or WebSocket connection) that carries a GraphQL
/// operation. The transport puts it into the request data; commands record it as the
/// correlation id of the events they append, so logs and events can be joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(pub uuid::Uuid);

//! Helpers for the commands tests: fresh databases on both backends, a counting store
//! decorator, and shorthand for the commands the tests issue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use commands::{CommandContext, Commands, ProductAggregate};
use domain::{CartCommand, CartId, CustomerId, Money, ProductCommand, Sku};
use store::{AppendOutcome, AppendRequest, EventStore, Position, RecordedEvent, Snapshot, StoreError};
use tokio::sync::watch;
use uuid::Uuid;

pub async fn postgres() -> Arc<dyn EventStore> {
    let db = store::testing::postgres().await;
    store::open(&db.url).await.unwrap_or_else(|e| panic!("open Postgres: {e:?}")).store()
}

pub async fn sqlite() -> Arc<dyn EventStore> {
    store::open(&store::testing::sqlite())
        .await
        .unwrap_or_else(|e| panic!("open SQLite: {e:?}"))
        .store()
}

/// Runs `async fn $name(store: Arc<dyn EventStore>)` against both backends.
macro_rules! backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::postgres().await).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::sqlite().await).await;
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

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("valid sku")
}

pub async fn register(commands: &Commands, sku_name: &str, price: i64, stock: i64) {
    let command = ProductCommand::Register {
        sku: sku(sku_name),
        name: sku_name.to_owned(),
        price: Money::from_minor(price),
        initial_stock: stock,
    };
    commands
        .execute::<ProductAggregate, _, _>(&ctx("admin"), &sku(sku_name).stream_id(), None, move |s| {
            domain::product::decide(s, command.clone())
        })
        .await
        .expect("register product");
}

pub async fn create_cart(commands: &Commands, customer: &str) -> CartId {
    let id = CartId::from_uuid(Uuid::now_v7());
    let command = CartCommand::Create {
        cart_id: id,
        customer_id: CustomerId::parse(customer).expect("customer"),
    };
    commands.cart(&ctx(customer), id, None, command).await.expect("create cart");
    id
}

/// Counts the store calls that cost a database round trip.
pub struct Counting {
    inner: Arc<dyn EventStore>,
    pub reads: AtomicUsize,
    pub appends: AtomicUsize,
    /// Appends wait while a test holds this for writing (to queue commands behind one).
    pub hold: tokio::sync::RwLock<()>,
}

impl Counting {
    pub fn wrap(inner: Arc<dyn EventStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            reads: AtomicUsize::new(0),
            appends: AtomicUsize::new(0),
            hold: tokio::sync::RwLock::new(()),
        })
    }

    /// (reads, appends) so far, then zero.
    pub fn take(&self) -> (usize, usize) {
        (self.reads.swap(0, Ordering::SeqCst), self.appends.swap(0, Ordering::SeqCst))
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl EventStore for Counting {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let _held = self.hold.read().await;
        self.inner.append(request).await
    }
    async fn read_stream(&self, stream_id: &str, from_version: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read();
        self.inner.read_stream(stream_id, from_version, limit).await
    }
    async fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.read();
        self.inner.stream_version(stream_id).await
    }
    async fn read_all(&self, after: Position, limit: usize, categories: Option<&[String]>) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read();
        self.inner.read_all(after, limit, categories).await
    }
    async fn head_position(&self) -> Result<Position, StoreError> {
        self.read();
        self.inner.head_position().await
    }
    async fn idempotent_outcome(&self, actor: &str, key: &str) -> Result<Option<(String, AppendOutcome)>, StoreError> {
        self.read();
        self.inner.idempotent_outcome(actor, key).await
    }
    async fn load_snapshot(&self, stream_id: &str, state_schema_version: i32) -> Result<Option<Snapshot>, StoreError> {
        self.read();
        self.inner.load_snapshot(stream_id, state_schema_version).await
    }
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.save_snapshot(snapshot).await
    }
    fn doorbell(&self) -> watch::Receiver<u64> {
        self.inner.doorbell()
    }
}

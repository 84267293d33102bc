//! The one command loop: load the aggregate(s), run the domain's `decide`, append with the
//! expected version(s). The API's mutations and the reactors both go through it, so the
//! rules for conflicts, retries and idempotency are written once.
//!
//! * With a client's expected version, a stale version is a [`CommandError::Conflict`].
//! * Without one, a conflict means someone else wrote first: load again, decide again,
//!   append again, with jittered backoff, until the time budget runs out. Such a command
//!   never fails because of concurrent writers (short of the budget).
//! * With an idempotency key, a repeat returns the first outcome (state as of the version
//!   the first call produced) and appends nothing; the store arbitrates concurrent repeats.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use domain::{CartState, DomainError, OrderId, OrderState, Product, Sku};
use rand::Rng;
use store::aggregate::{encode, load, load_until, snapshot_if_due, Aggregate, CartAggregate, Loaded, OrderAggregate, ProductAggregate};
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, IdempotencyKey, Metadata, Position, StoreError};
use uuid::Uuid;

/// Save a snapshot once this many events were folded since the last one.
const SNAPSHOT_EVERY: u64 = 50;
/// How long a command may keep retrying after conflicts.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(5);

/// Who issues a command and why, carried into every event's metadata.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    /// A customer id, an admin id or a worker's name.
    pub actor: String,
    pub correlation_id: Option<Uuid>,
    /// The event that caused this command (reactors).
    pub causation_id: Option<Uuid>,
    /// With a key, a repeated command returns the first outcome and appends nothing.
    pub idempotency_key: Option<String>,
    /// What the command was, to tell an honest retry from a reused key.
    pub fingerprint: String,
    /// Retries after conflicts stop when this runs out.
    pub budget: Option<Duration>,
}

impl CommandContext {
    fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            actor: self.actor.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }

    fn idempotency(&self) -> Option<IdempotencyKey> {
        self.idempotency_key.as_ref().map(|key| IdempotencyKey {
            actor: self.actor.clone(),
            key: key.clone(),
            fingerprint: self.fingerprint.clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The client's expected version is not the stream's.
    #[error("expected version {expected}, actual version {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error("this idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// Conflicts kept coming until the time budget ran out.
    #[error("too many concurrent writers; try again")]
    Contended,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyKeyReused { .. } => CommandError::IdempotencyKeyReused,
            other => CommandError::Store(other),
        }
    }
}

/// The state right after a command, with the version and the position of the last
/// event it appended (for a command that appended nothing, of the stream's last event).
#[derive(Clone, Debug, PartialEq)]
pub struct Executed<S> {
    pub state: S,
    pub version: u64,
    pub position: Position,
    /// True when an earlier call with the same idempotency key is being answered.
    pub replayed: bool,
}

/// Decides and appends a command on one stream.
pub async fn execute<A: Aggregate>(
    store: &dyn EventStore,
    ctx: &CommandContext,
    stream_id: &str,
    expected: Option<u64>,
    decide: impl Fn(&A::State) -> Result<Vec<A::Event>, DomainError>,
) -> Result<Executed<A::State>, CommandError> {
    if let Some(done) = replay::<A>(store, ctx, stream_id).await? {
        return Ok(done);
    }
    let mut retry = Retry::new(ctx.budget);
    loop {
        let loaded = load::<A>(store, stream_id).await?;
        if let Some(expected) = expected {
            if expected != loaded.version {
                return Err(CommandError::Conflict {
                    expected,
                    actual: loaded.version,
                });
            }
        }
        let events = decide(&loaded.state)?;
        if events.is_empty() {
            let position = last_position(store, stream_id, loaded.version).await?;
            return Ok(Executed {
                state: loaded.state,
                version: loaded.version,
                position,
                replayed: false,
            });
        }
        let metadata = ctx.metadata();
        let mut request = AppendRequest::single(
            stream_id,
            ExpectedVersion::Exact(loaded.version),
            events.iter().map(|e| encode(e, &metadata)).collect(),
        );
        request.idempotency = ctx.idempotency();
        match store.append(request).await {
            Ok(outcome) if outcome.replayed => return replayed::<A>(store, stream_id, &outcome).await,
            Ok(outcome) => {
                let state = events.iter().fold(loaded.state, A::evolve);
                let done = Loaded {
                    state,
                    version: loaded.version + events.len() as u64,
                    snapshot_version: loaded.snapshot_version,
                };
                if let Err(e) = snapshot_if_due::<A>(store, stream_id, &done, SNAPSHOT_EVERY).await {
                    tracing::warn!(stream_id, error = %e, "could not save a snapshot");
                }
                return Ok(Executed {
                    state: done.state,
                    version: done.version,
                    position: outcome.last_position(),
                    replayed: false,
                });
            }
            Err(StoreError::Conflict { actual, .. }) => match expected {
                Some(expected) => return Err(CommandError::Conflict { expected, actual }),
                None => retry.wait().await?,
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// Everything a placed order left behind: the order, the checked-out cart, and the
/// position of the last event.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacedOrder {
    pub order: Executed<OrderState>,
    pub cart: CartState,
}

/// Places the order for a cart: one atomic append across the cart, every product of its
/// lines and the new order, with one expected version per stream. A conflict on a
/// product (a concurrent stock change) is re-decided; a conflict on the cart is the
/// client's when it gave `expected_cart_version`.
pub async fn place_order(
    store: &dyn EventStore,
    ctx: &CommandContext,
    cart_id: domain::CartId,
    expected_cart_version: Option<u64>,
    order_id: OrderId,
) -> Result<PlacedOrder, CommandError> {
    let cart_stream = cart_id.stream_id();
    if let Some((_, outcome)) = stored_outcome(store, ctx).await? {
        let order_stream = outcome
            .streams
            .iter()
            .find(|s| s.stream_id.starts_with("order-"))
            .map(|s| s.stream_id.clone());
        let order_stream = order_stream.ok_or_else(|| CommandError::IdempotencyKeyReused)?;
        let order = replayed::<OrderAggregate>(store, &order_stream, &outcome).await?;
        let cart = replayed::<CartAggregate>(store, &cart_stream, &outcome).await?.state;
        return Ok(PlacedOrder { order, cart });
    }
    let mut retry = Retry::new(ctx.budget);
    loop {
        let cart = load::<CartAggregate>(store, &cart_stream).await?;
        if let Some(expected) = expected_cart_version {
            if expected != cart.version {
                return Err(CommandError::Conflict {
                    expected,
                    actual: cart.version,
                });
            }
        }
        let mut products = BTreeMap::<Sku, Product>::new();
        let mut product_versions = BTreeMap::<Sku, u64>::new();
        for line in cart.state.iter().flat_map(|c| c.lines.iter()) {
            let loaded = load::<ProductAggregate>(store, &line.sku.stream_id()).await?;
            if let Some(product) = loaded.state {
                products.insert(line.sku.clone(), product);
                product_versions.insert(line.sku.clone(), loaded.version);
            }
        }
        let decided = domain::decide_place_order(&cart.state, &products, order_id)?;
        let metadata = ctx.metadata();
        let mut request = AppendRequest::single(
            &cart_stream,
            ExpectedVersion::Exact(cart.version),
            decided.cart_events.iter().map(|e| encode(e, &metadata)).collect(),
        );
        for (sku, events) in &decided.product_events {
            let version = product_versions.get(sku).copied().unwrap_or(0);
            request = request.with_stream(
                sku.stream_id(),
                ExpectedVersion::Exact(version),
                events.iter().map(|e| encode(e, &metadata)).collect(),
            );
        }
        request = request.with_stream(
            order_id.stream_id(),
            ExpectedVersion::NoStream,
            decided.order_events.iter().map(|e| encode(e, &metadata)).collect(),
        );
        request.idempotency = ctx.idempotency();
        match store.append(request).await {
            Ok(outcome) if outcome.replayed => {
                let order = replayed::<OrderAggregate>(store, &order_id.stream_id(), &outcome).await?;
                let cart = replayed::<CartAggregate>(store, &cart_stream, &outcome).await?.state;
                return Ok(PlacedOrder { order, cart });
            }
            Ok(outcome) => {
                let cart_state = decided.cart_events.iter().fold(cart.state, CartAggregate::evolve);
                let order_state = decided.order_events.iter().fold(OrderState::default(), OrderAggregate::evolve);
                let order = Executed {
                    state: order_state,
                    version: decided.order_events.len() as u64,
                    position: outcome.last_position(),
                    replayed: false,
                };
                return Ok(PlacedOrder { order, cart: cart_state });
            }
            Err(StoreError::Conflict { stream, actual, .. }) => match expected_cart_version {
                Some(expected) if stream == cart_stream => return Err(CommandError::Conflict { expected, actual }),
                _ => retry.wait().await?,
            },
            Err(e) => return Err(e.into()),
        }
    }
}

async fn stored_outcome(store: &dyn EventStore, ctx: &CommandContext) -> Result<Option<(String, AppendOutcome)>, CommandError> {
    let Some(key) = &ctx.idempotency_key else { return Ok(None) };
    match store.idempotent_outcome(&ctx.actor, key).await? {
        Some((fingerprint, _)) if fingerprint != ctx.fingerprint => Err(CommandError::IdempotencyKeyReused),
        found => Ok(found),
    }
}

/// The answer to a repeated idempotency key, if this is one.
async fn replay<A: Aggregate>(store: &dyn EventStore, ctx: &CommandContext, stream_id: &str) -> Result<Option<Executed<A::State>>, CommandError> {
    match stored_outcome(store, ctx).await? {
        Some((_, outcome)) => Ok(Some(replayed::<A>(store, stream_id, &outcome).await?)),
        None => Ok(None),
    }
}

/// The state as the first call left it: the stream folded up to the version it produced.
async fn replayed<A: Aggregate>(store: &dyn EventStore, stream_id: &str, outcome: &AppendOutcome) -> Result<Executed<A::State>, CommandError> {
    let Some(written) = outcome.stream(stream_id) else {
        // The key was first used for a command on another stream.
        return Err(CommandError::IdempotencyKeyReused);
    };
    let until = written.last_version;
    let loaded = load_until::<A>(store, stream_id, |e| e.version <= until).await?;
    Ok(Executed {
        state: loaded.state,
        version: loaded.version,
        position: outcome.last_position(),
        replayed: true,
    })
}

async fn last_position(store: &dyn EventStore, stream_id: &str, version: u64) -> Result<Position, CommandError> {
    if version == 0 {
        return Ok(Position::START);
    }
    Ok(store
        .read_stream(stream_id, version, 1)
        .await?
        .first()
        .map(|e| e.position)
        .unwrap_or_default())
}

/// Jittered exponential backoff within a time budget.
struct Retry {
    deadline: Instant,
    attempt: u32,
}

impl Retry {
    fn new(budget: Option<Duration>) -> Self {
        Retry {
            deadline: Instant::now() + budget.unwrap_or(DEFAULT_BUDGET),
            attempt: 0,
        }
    }

    async fn wait(&mut self) -> Result<(), CommandError> {
        self.attempt += 1;
        let ceiling_ms = (2u64 << self.attempt.min(7)).min(200);
        let pause = Duration::from_millis(rand::rng().random_range(0..=ceiling_ms));
        if Instant::now() + pause >= self.deadline {
            return Err(CommandError::Contended);
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

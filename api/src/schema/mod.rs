//! The GraphQL schema of the contract (../shared/design/schema.graphql): queries read
//! the projections (or the event store for past states and history), mutations go through
//! the write model in the `commands` crate, subscriptions follow the process's live
//! feed ([`store::LiveFeed`]). The transport (HTTP, WebSocket, limits) lives elsewhere and hands
//! each request the caller's [`Principal`] as request or connection data.
//!
//! Access rules, checked before anything runs:
//! * no token: UNAUTHENTICATED for everything but the catalog (`product`, `products`);
//! * admin-only operations check the role first: a customer gets FORBIDDEN whatever
//!   the arguments;
//! * another customer's cart or order is treated as if it did not exist: reads answer
//!   null, mutations and subscriptions NOT_FOUND. Admins may read, watch and cancel
//!   any; cart changes are the owner's alone.

mod admin_only;
mod archive;
mod bad_text;
mod connection;
mod documents;
mod erasure;
mod gate;
mod introspection;
mod mutation;
mod numbers;
mod operation_metrics;
mod query;
mod scalars;
mod shared_changes;
mod subscription;
mod types;

use std::sync::Mutex;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Schema, SchemaBuilder};
use commands::{load_until, Aggregate, Loaded};
use sha2::{Digest, Sha256};

pub use mutation::Mutation;
pub use query::{Customer, Query};
pub use subscription::Subscription;

use crate::auth::Principal;
use crate::context::ApiContext;
use crate::error::ApiError;
use types::Timestamps;

/// The executable schema: async-graphql's, behind the [`gate`] every operation passes.
#[derive(Clone)]
pub struct AppSchema {
    schema: Schema<Query, Mutation, Subscription>,
    documents: std::sync::Arc<documents::Documents>,
    /// Whether `__schema` and `__type` are answered (see `introspection`).
    introspection: bool,
}

impl AppSchema {
    pub async fn execute(&self, request: impl Into<async_graphql::Request>) -> async_graphql::Response {
        gate::execute(self, request.into()).await
    }
}

impl async_graphql::Executor for AppSchema {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        gate::execute(self, request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<std::sync::Arc<async_graphql::Data>>,
    ) -> async_graphql::futures_util::stream::BoxStream<'static, async_graphql::Response> {
        gate::execute_stream(self, request, session_data)
    }
}

/// Deepest selection accepted. The contract's own types nest at most ~10 levels; the
/// introspection query of the bundled GraphiQL needs exactly 15
/// (`__schema.types.fields.args.type` and 9 levels of `ofType`).
pub const MAX_DEPTH: usize = 15;
/// Largest query cost accepted: every field costs 1, and a list field with `first`
/// costs `first` times its selection, so wide pages of nested pages are refused.
pub const MAX_COMPLEXITY: usize = 2_000;
/// Most items one page may ask for.
pub const MAX_PAGE: i32 = 100;
/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

pub(crate) fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// The schema with everything the resolvers need, introspection on.
pub fn build_schema(ctx: ApiContext) -> AppSchema {
    build_schema_with(ctx, true)
}

/// The schema, with introspection on or off (production's default, see `introspection`).
pub fn build_schema_with(ctx: ApiContext, introspection: bool) -> AppSchema {
    // Schema-wide (so HTTP and WebSocket operations get it alike) and without a cache,
    // so it only merges the reads that are due at the same moment; nothing goes stale.
    let history = DataLoader::new(types::HistoryLoader::new(ctx.store.clone()), tokio::spawn);
    // The same for data keys: a page of orders opens its personal data with one key read.
    // No cache, so an erasure is seen by the very next read.
    let keys = DataLoader::new(types::KeyLoader::new(ctx.vault.clone()), tokio::spawn);
    // One write model per schema (= per process): its mailboxes and cache are shared by
    // every mutation.
    let commands = commands::Commands::new(ctx.store.clone());
    // One per schema too: the subscribers of a cart share each change's fold and rendering.
    let cart_changes = subscription::CartChanges::default();
    let mut builder = builder().data(ctx).data(history).data(keys).data(commands).data(cart_changes);
    if !introspection {
        builder = builder.disable_introspection();
    }
    AppSchema {
        schema: builder.finish(),
        documents: Default::default(),
        introspection,
    }
}

/// The schema's SDL, as kept in `api/schema.graphql` (`cartsource schema`).
pub fn sdl() -> String {
    builder().finish().sdl()
}

// ------------------------------------------------------------------ helpers

pub(crate) fn api<'a>(ctx: &Context<'a>) -> Result<&'a ApiContext, ApiError> {
    ctx.data_opt::<ApiContext>()
        .ok_or_else(|| ApiError::internal("the schema was built without an ApiContext"))
}

/// The signed-in caller, or UNAUTHENTICATED.
pub(crate) fn principal<'a>(ctx: &Context<'a>) -> Result<&'a Principal, ApiError> {
    ctx.data_opt::<Principal>().ok_or_else(ApiError::unauthenticated)
}

/// The signed-in admin: UNAUTHENTICATED without a token, FORBIDDEN for a customer.
pub(crate) fn admin<'a>(ctx: &Context<'a>) -> Result<&'a Principal, ApiError> {
    let who = principal(ctx)?;
    if who.is_admin() {
        Ok(who)
    } else {
        Err(ApiError::admin_only())
    }
}

/// Whether `who` may see (and watch) something owned by `owner`.
pub(crate) fn may_see(who: &Principal, owner: &str) -> bool {
    who.is_admin() || who.id == owner
}

/// `first` of a connection: absent or null means the field's default; 0 to [`MAX_PAGE`].
pub(crate) fn page_size(first: Option<i32>, default: i32) -> Result<usize, ApiError> {
    let first = first.unwrap_or(default);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(ApiError::BadUserInput(format!("first must be between 0 and {MAX_PAGE} (got {first})")));
    }
    Ok(first as usize)
}

/// Complexity of a connection field: its page size times its selection.
pub(crate) fn page_cost(first: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let first = first.unwrap_or(default).clamp(1, MAX_PAGE) as usize;
    first.saturating_mul(child_complexity).saturating_add(1)
}

/// Waits until the projection has applied `min` (when given), within the context's bound.
pub(crate) async fn wait_for(ctx: &ApiContext, projection: &str, min: Option<scalars::Position>) -> Result<(), ApiError> {
    let Some(min) = min else { return Ok(()) };
    ctx.projections
        .wait_for(projection, min.0, ctx.consistency_timeout)
        .await
        .map_err(ApiError::from)
}

/// What makes two commands the same request for an idempotency key: the mutation's
/// name and its input as canonical JSON (keys sorted, key itself left out).
pub(crate) fn fingerprint(mutation: &str, input: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(mutation.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_json(input).as_bytes());
    hex::encode(hasher.finalize())
}

fn canonical_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_json(&map[*k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

pub(crate) fn valid_idempotency_key(key: Option<String>) -> Result<Option<String>, ApiError> {
    match key {
        Some(k) if k.is_empty() || k.chars().count() > MAX_IDEMPOTENCY_KEY => Err(ApiError::BadUserInput(format!(
            "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        ))),
        other => Ok(other),
    }
}

/// The state of a stream as of a point (time travel, or now with `|_| true`): folded
/// from its first event while `keep` says yes, noting
/// when the first and the last kept events were recorded.
pub(crate) async fn state_as_of<A: Aggregate>(
    api: &ApiContext,
    stream_id: &str,
    keep: impl Fn(&store::StreamEvent) -> bool + Send + Sync,
) -> Result<(Loaded<A::State>, Timestamps), ApiError> {
    let times = Mutex::new(Timestamps::default());
    let loaded = load_until::<A>(api.store.as_ref(), stream_id, |e| {
        let kept = keep(e);
        if kept {
            let mut times = times.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            times.created.get_or_insert(e.recorded_at);
            times.updated = Some(e.recorded_at);
        }
        kept
    })
    .await?;
    let times = times.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok((loaded, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = serde_json::json!({"cartId": "x", "sku": "apple", "quantity": 2});
        let b = serde_json::json!({"quantity": 2, "sku": "apple", "cartId": "x"});
        let c = serde_json::json!({"quantity": 3, "sku": "apple", "cartId": "x"});
        assert_eq!(fingerprint("addItemToCart", &a), fingerprint("addItemToCart", &b));
        assert_ne!(fingerprint("addItemToCart", &a), fingerprint("addItemToCart", &c));
        assert_ne!(fingerprint("addItemToCart", &a), fingerprint("changeItemQuantity", &a));
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(None, 20).unwrap(), 20);
        assert_eq!(page_size(Some(0), 20).unwrap(), 0);
        assert!(page_size(Some(-1), 20).is_err());
        assert!(page_size(Some(MAX_PAGE + 1), 20).is_err());
    }
}

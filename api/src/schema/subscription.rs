//! Subscriptions, built on the process's shared live feed ([`store::LiveFeed`]): each
//! catches up from the store, then waits in memory for the events the feed's one reader
//! hands it (that reader hears commits from every process). A subscriber that falls more
//! than the feed's buffer behind is dropped with SUBSCRIPTION_LAGGED, which says where to
//! resume (`afterVersion` / `afterPosition`).
//!
//! Authorization happens once, when the subscription starts. A change stream starts
//! from a state folded from the store at a known version and then applies the events
//! of the live feed's stream subscription from exactly that version: every event after it
//! arrives once, in order, whether it was committed before, during or after the
//! catch-up, so there is no gap and no duplicate. The subscribers of one cart share the
//! fold and the rendering of each change ([`super::shared_changes`]).

use std::sync::Arc;

use async_graphql::{Context, Subscription as SubscriptionMacro};
use futures::stream::{self, BoxStream, StreamExt};
use time::OffsetDateTime;

use commands::{decode, Aggregate, CartAggregate, OrderAggregate};
use domain::{CartId, CartState, OrderId};

use super::mutation::{cart_owner, order_owner};
use super::numbers::non_negative;
use super::scalars::{Position, UuidScalar};
use super::shared_changes::{Folded, Shared, SharedChanges};
use super::types::{Cart, CartChange, CartEvent, EventMeta, Order, RecordedEvent, Timestamps};
use super::{admin, api, may_see, principal, state_as_of};
use crate::error::ApiError;

pub struct Subscription;

/// An aggregate's state as it follows a stream.
struct Follow<S> {
    events: BoxStream<'static, Result<Arc<store::RecordedEvent>, store::StoreError>>,
    state: Arc<S>,
    created: Option<OffsetDateTime>,
    failed: bool,
}

impl<S: Clone> Follow<S> {
    /// The next event, or one error after which the stream ends.
    async fn next_event(&mut self) -> Option<Result<Arc<store::RecordedEvent>, ApiError>> {
        if self.failed {
            return None;
        }
        match self.events.next().await? {
            Ok(recorded) => {
                self.created.get_or_insert(recorded.recorded_at);
                Some(Ok(recorded))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e.into()))
            }
        }
    }

    /// Folds an event onto the state; an error ends the stream after it is delivered.
    fn fold<A: Aggregate<State = S>>(&mut self, recorded: &store::RecordedEvent) -> Result<A::Event, ApiError> {
        let event = decode::<A::Event>(recorded).map_err(|e| {
            self.failed = true;
            ApiError::from(e)
        })?;
        self.state = Arc::new(A::evolve(S::clone(&self.state), &event));
        Ok(event)
    }

    fn times(&self, recorded: &store::RecordedEvent) -> Timestamps {
        Timestamps {
            created: self.created,
            updated: Some(recorded.recorded_at),
        }
    }
}

/// The cart after one event, as `cartChanged` yields it.
fn cart_change(follow: &mut Follow<CartState>, recorded: &store::RecordedEvent) -> Result<Folded<CartState, CartChange>, ApiError> {
    let event = follow.fold::<CartAggregate>(recorded)?;
    let Some(cart) = follow.state.as_ref() else {
        follow.failed = true;
        return Err(ApiError::internal(format!("{} has events before CartCreated", recorded.stream_id)));
    };
    let item = CartChange {
        cart: Cart::from_state(cart, recorded.version, follow.times(recorded)),
        event: CartEvent::new(EventMeta::of(recorded), event),
    };
    Ok(Folded::new(follow.state.clone(), item))
}

/// What the subscribers of one cart share (see [`super::shared_changes`]).
pub type CartChanges = SharedChanges<CartState, CartChange>;

#[SubscriptionMacro]
impl Subscription {
    /// Every change of one cart, in order, with no gap and no duplicate: first the events
    /// after afterVersion (0 or absent: from the start) replayed from the store, then
    /// live ones as they are committed. A subscriber too slow to keep up ends with
    /// SUBSCRIPTION_LAGGED (extensions.afterVersion: subscribe again with it).
    async fn cart_changed(
        &self,
        ctx: &Context<'_>,
        cart_id: UuidScalar,
        after_version: Option<i32>,
    ) -> Result<BoxStream<'static, Result<Shared<CartState, CartChange>, ApiError>>, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?.clone();
        let cart_id = CartId::from_uuid(cart_id.0);
        match cart_owner(&api, cart_id).await? {
            Some(owner) if may_see(who, &owner) => {}
            _ => return Err(ApiError::NotFound("cart".to_owned())),
        }
        let after = after_version.map(|v| non_negative("afterVersion", v)).transpose()?.unwrap_or(0);
        let stream_id = cart_id.stream_id();
        let (loaded, times) = state_as_of::<CartAggregate>(&api, &stream_id, |e| e.version <= after).await?;
        if loaded.version < after {
            return Err(ApiError::BadUserInput(format!(
                "afterVersion {after} is beyond the cart's version {}",
                loaded.version
            )));
        }
        let follow = Follow {
            events: api.live.stream(&stream_id, after),
            state: Arc::new(loaded.state),
            created: times.created,
            failed: false,
        };
        let shared = ctx
            .data_opt::<CartChanges>()
            .ok_or_else(|| ApiError::internal("the schema was built without its CartChanges"))?
            .of(&stream_id);
        Ok(stream::unfold((follow, shared), |(mut follow, shared)| async move {
            let recorded = match follow.next_event().await? {
                Ok(recorded) => recorded,
                Err(e) => return Some((Err(e), (follow, shared))),
            };
            let folded = match shared.take(recorded.event_id) {
                Some(folded) => {
                    follow.state = folded.state.clone();
                    Ok(folded)
                }
                None => cart_change(&mut follow, &recorded).map(|folded| {
                    let folded = Arc::new(folded);
                    shared.keep(recorded.event_id, &folded);
                    folded
                }),
            };
            let item = folded.map(Shared);
            Some((item, (follow, shared)))
        })
        .boxed())
    }

    /// The order each time it changes, starting with its current state. A subscriber too
    /// slow to keep up ends with SUBSCRIPTION_LAGGED: subscribe again.
    async fn order_changed(&self, ctx: &Context<'_>, order_id: UuidScalar) -> Result<BoxStream<'static, Result<Order, ApiError>>, ApiError> {
        let who = principal(ctx)?;
        let api = api(ctx)?.clone();
        let order_id = OrderId::from_uuid(order_id.0);
        match order_owner(&api, order_id).await? {
            Some(owner) if may_see(who, &owner) => {}
            _ => return Err(ApiError::NotFound("order".to_owned())),
        }
        let stream_id = order_id.stream_id();
        let (loaded, times) = state_as_of::<OrderAggregate>(&api, &stream_id, |_| true).await?;
        let current = loaded.state.as_ref().ok_or_else(|| ApiError::NotFound("order".to_owned()))?;
        let first = Order::from_state(current, loaded.version, times);
        let follow = Follow {
            events: api.live.stream(&stream_id, loaded.version),
            state: Arc::new(loaded.state),
            created: times.created,
            failed: false,
        };
        let changes = stream::unfold(follow, |mut follow| async move {
            let recorded = match follow.next_event().await? {
                Ok(recorded) => recorded,
                Err(e) => return Some((Err(e), follow)),
            };
            let order = match follow.fold::<OrderAggregate>(&recorded) {
                Err(e) => Err(e),
                Ok(_) => match follow.state.as_ref() {
                    Some(order) => Ok(Order::from_state(order, recorded.version, follow.times(&recorded))),
                    None => {
                        follow.failed = true;
                        Err(ApiError::internal(format!("{} has events before OrderPlaced", recorded.stream_id)))
                    }
                },
            };
            Some((order, follow))
        });
        Ok(stream::once(async move { Ok(first) }).chain(changes).boxed())
    }

    /// Admin only. The global log after a position (absent: from the start), then live;
    /// optionally only streams of the given categories (e.g. "cart", "order", "product").
    /// A subscriber too slow to keep up ends with SUBSCRIPTION_LAGGED
    /// (extensions.afterPosition: subscribe again with it).
    async fn events(
        &self,
        ctx: &Context<'_>,
        after_position: Option<Position>,
        categories: Option<Vec<String>>,
    ) -> Result<BoxStream<'static, Result<RecordedEvent, ApiError>>, ApiError> {
        admin(ctx)?;
        let api = api(ctx)?;
        let after = after_position.map_or(store::Position::START, |p| p.0);
        // An empty list filters nothing, like an absent one.
        let categories = categories.filter(|c| !c.is_empty());
        // Refused here, before subscribing, rather than as the stream's first item.
        store::check_feed_categories(categories.as_deref()).map_err(|e| ApiError::BadUserInput(e.to_string()))?;
        // The feed's subscription ends after an error it cannot retry.
        let events = api
            .live
            .all(after, categories)
            .map(|item| item.map(|e| RecordedEvent(Arc::unwrap_or_clone(e))).map_err(ApiError::from));
        Ok(events.boxed())
    }
}

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
//! catch-up, so there is no gap and no duplicate.

use async_graphql::{Context, Subscription as SubscriptionMacro};
use futures::stream::{self, BoxStream, StreamExt};
use time::OffsetDateTime;

use commands::{decode, Aggregate, CartAggregate, OrderAggregate};
use domain::{CartId, OrderId};

use super::mutation::{cart_owner, order_owner};
use super::numbers::non_negative;
use super::scalars::{Position, UuidScalar};
use super::types::{Cart, CartChange, CartEvent, EventMeta, Order, RecordedEvent, Timestamps};
use super::{admin, api, may_see, principal, state_as_of};
use crate::error::ApiError;

pub struct Subscription;

/// An aggregate's state as it follows a stream.
struct Follow<S> {
    events: BoxStream<'static, Result<store::RecordedEvent, store::StoreError>>,
    state: S,
    created: Option<OffsetDateTime>,
    failed: bool,
}

impl<S> Follow<S> {
    /// The next event folded onto the state: `Some(Ok((event, domain event)))`, or one
    /// error after which the stream ends.
    async fn next<A: Aggregate<State = S>>(&mut self) -> Option<Result<(store::RecordedEvent, A::Event), ApiError>>
    where
        S: Clone,
    {
        if self.failed {
            return None;
        }
        let outcome = match self.events.next().await? {
            Ok(recorded) => decode::<A::Event>(&recorded).map(|event| (recorded, event)).map_err(ApiError::from),
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok((recorded, event)) => {
                self.created.get_or_insert(recorded.recorded_at);
                self.state = A::evolve(self.state.clone(), &event);
                Some(Ok((recorded, event)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

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
    ) -> Result<BoxStream<'static, Result<CartChange, ApiError>>, ApiError> {
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
            state: loaded.state,
            created: times.created,
            failed: false,
        };
        Ok(stream::unfold(follow, |mut follow| async move {
            let item = follow.next::<CartAggregate>().await?;
            let change = item.and_then(|(recorded, event)| {
                let cart = follow
                    .state
                    .as_ref()
                    .ok_or_else(|| ApiError::internal(format!("{} has events before CartCreated", recorded.stream_id)))?;
                let times = Timestamps {
                    created: follow.created,
                    updated: Some(recorded.recorded_at),
                };
                Ok(CartChange {
                    cart: Cart::from_state(cart, recorded.version, times),
                    event: CartEvent::new(EventMeta::of(&recorded), event),
                })
            });
            Some((change, follow))
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
            state: loaded.state,
            created: times.created,
            failed: false,
        };
        let changes = stream::unfold(follow, |mut follow| async move {
            let item = follow.next::<OrderAggregate>().await?;
            let order = item.and_then(|(recorded, _)| {
                let order = follow
                    .state
                    .as_ref()
                    .ok_or_else(|| ApiError::internal(format!("{} has events before OrderPlaced", recorded.stream_id)))?;
                let times = Timestamps {
                    created: follow.created,
                    updated: Some(recorded.recorded_at),
                };
                Ok(Order::from_state(order, recorded.version, times))
            });
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
            .map(|item| item.map(RecordedEvent).map_err(ApiError::from));
        Ok(events.boxed())
    }
}

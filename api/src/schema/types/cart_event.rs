//! The `CartEvent` interface and its six implementations: a cart's history and its
//! subscription's changes.

use async_graphql::{Interface, Object, SimpleObject};
use store::RecordedEvent as StoreEvent;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Cart, Money};
use crate::error::ApiError;
use crate::schema::numbers::to_int;
use crate::schema::scalars::{DateTime, Position, UuidScalar};

/// What every cart event shows.
#[derive(Clone, Debug)]
pub struct EventMeta {
    pub position: store::Position,
    pub version: u64,
    pub occurred_at: OffsetDateTime,
    pub actor: String,
}

impl EventMeta {
    pub(crate) fn of(e: &StoreEvent) -> Self {
        EventMeta {
            position: e.position,
            version: e.version,
            occurred_at: e.recorded_at,
            actor: e.metadata.actor.clone(),
        }
    }
}

/// The four fields every `CartEvent` implementation has, plus its own.
macro_rules! cart_event {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* } { $($methods:tt)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            pub meta: EventMeta,
            $(pub $field: $ty,)*
        }

        $(#[$doc])*
        #[Object]
        impl $name {
            /// Position of the event in the global log.
            async fn position(&self) -> Position {
                self.meta.position.into()
            }

            /// Version of the cart once this event applied (the first event is 1).
            async fn version(&self) -> i32 {
                to_int(self.meta.version)
            }

            async fn occurred_at(&self) -> DateTime {
                self.meta.occurred_at.into()
            }

            /// Who caused it: a customer id, an admin id, or a worker's name.
            async fn actor(&self) -> &str {
                &self.meta.actor
            }

            $($methods)*
        }
    };
}

cart_event!(CartCreated { customer_id: String } {
    async fn customer_id(&self) -> &str {
        &self.customer_id
    }
});

cart_event!(
    /// Adding a sku already in the cart adds to its quantity; `quantity` is the amount this command added.
    ItemAddedToCart { sku: String, quantity: u32, unit_price: i64 } {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn quantity(&self) -> i32 {
        to_int(self.quantity)
    }

    async fn unit_price(&self) -> Money {
        Money(self.unit_price)
    }
});

cart_event!(ItemQuantityChanged { sku: String, quantity: u32 } {
    async fn sku(&self) -> &str {
        &self.sku
    }

    async fn quantity(&self) -> i32 {
        to_int(self.quantity)
    }
});

cart_event!(ItemRemovedFromCart { sku: String } {
    async fn sku(&self) -> &str {
        &self.sku
    }
});

cart_event!(CartCleared {} {});

cart_event!(CartCheckedOut { order_id: Uuid } {
    async fn order_id(&self) -> UuidScalar {
        self.order_id.into()
    }
});

/// Something that happened to a cart.
#[derive(Clone, Debug, Interface)]
#[graphql(
    field(name = "position", ty = "Position", desc = "Position of the event in the global log."),
    field(
        name = "version",
        ty = "i32",
        desc = "Version of the cart once this event applied (the first event is 1)."
    ),
    field(name = "occurred_at", ty = "DateTime"),
    field(name = "actor", ty = "&str", desc = "Who caused it: a customer id, an admin id, or a worker's name.")
)]
pub enum CartEvent {
    CartCreated(CartCreated),
    ItemAddedToCart(ItemAddedToCart),
    ItemQuantityChanged(ItemQuantityChanged),
    ItemRemovedFromCart(ItemRemovedFromCart),
    CartCleared(CartCleared),
    CartCheckedOut(CartCheckedOut),
}

impl CartEvent {
    /// The GraphQL form of a recorded cart event (decoded, so upcast old schemas apply).
    pub fn from_recorded(recorded: &StoreEvent) -> Result<Self, ApiError> {
        let event = commands::decode::<domain::CartEvent>(recorded)?;
        Ok(Self::new(EventMeta::of(recorded), event))
    }

    pub fn new(meta: EventMeta, event: domain::CartEvent) -> Self {
        use domain::CartEvent as E;
        match event {
            E::CartCreated { customer_id, .. } => CartEvent::CartCreated(CartCreated {
                meta,
                customer_id: customer_id.into(),
            }),
            E::ItemAddedToCart {
                sku, quantity, unit_price, ..
            } => CartEvent::ItemAddedToCart(ItemAddedToCart {
                meta,
                sku: sku.into(),
                quantity,
                unit_price: unit_price.minor_units(),
            }),
            E::ItemQuantityChanged { sku, quantity } => CartEvent::ItemQuantityChanged(ItemQuantityChanged {
                meta,
                sku: sku.into(),
                quantity,
            }),
            E::ItemRemovedFromCart { sku } => CartEvent::ItemRemovedFromCart(ItemRemovedFromCart { meta, sku: sku.into() }),
            E::CartCleared {} => CartEvent::CartCleared(CartCleared { meta }),
            E::CartCheckedOut { order_id } => CartEvent::CartCheckedOut(CartCheckedOut {
                meta,
                order_id: *order_id.as_uuid(),
            }),
        }
    }
}

/// One event and the cart as it stood right after it.
#[derive(Clone, Debug, SimpleObject)]
pub struct CartChange {
    pub event: CartEvent,
    pub cart: Cart,
}

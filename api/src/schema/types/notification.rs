//! `Notification`: a message for a customer, from the notifications read model.

use async_graphql::Object;

use crate::schema::scalars::{DateTime, UuidScalar};

#[derive(Clone, Debug)]
pub struct Notification(pub projections::NotificationView);

#[Object]
impl Notification {
    async fn id(&self) -> UuidScalar {
        self.0.id.into()
    }

    /// ORDER_PLACED, ORDER_SHIPPED, ORDER_CANCELLED, ...
    async fn kind(&self) -> &str {
        &self.0.kind
    }

    async fn message(&self) -> &str {
        &self.0.message
    }

    async fn order_id(&self) -> Option<UuidScalar> {
        self.0.order_id.map(UuidScalar)
    }

    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
}

//! `Notification`: a message for a customer, from the notifications read model.

use async_graphql::{Context, Object};

use super::personal_data::Sealed;
use crate::error::ApiError;
use crate::schema::scalars::{DateTime, UuidScalar};

#[derive(Clone, Debug)]
pub struct Notification(pub projections::NotificationView, Sealed);

impl From<projections::NotificationView> for Notification {
    fn from(view: projections::NotificationView) -> Self {
        let sent_to = Sealed::new(&view.customer_id, view.sent_to.clone(), false);
        Notification(view, sent_to)
    }
}

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

    /// The email it was sent to (the order's contact email); null when the order had none
    /// or the customer erased their personal data.
    async fn sent_to(&self, ctx: &Context<'_>) -> Result<Option<String>, ApiError> {
        Ok(self.1.data(ctx).await?.and_then(|d| d.contact_email.clone()))
    }

    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
}

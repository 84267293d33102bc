//! The notification reactor's output: what each customer is told about their orders.
//!
//! It is a projection rather than a command-issuing reactor: its effect is a row, so the
//! row and the checkpoint commit together. A notification's id *is* the id of the event that
//! caused it and rows are inserted with `on conflict do nothing`, so even a replayed event
//! (a reset checkpoint, two leaders for a moment) cannot notify twice.
//!
//! A notification is addressed to the order's contact email: `sent_to` keeps the order's
//! sealed personal data (the API opens the email from it; a mail sender would do the same
//! with the vault), never the address in the clear. `PersonalDataErased` drops it.

mod query;

pub use query::NotificationView;

use std::collections::HashMap;

use domain::{AnyEvent, OrderEvent, StreamId};
use serde::{Deserialize, Serialize};
use store::EventStore;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Decoded, Prepared};
use crate::db::{json_arg, pos, ts, Arg, Conn, Sql};
use crate::error::ProjectionError;

pub const ORDER_PLACED: &str = "ORDER_PLACED";
pub const ORDER_SHIPPED: &str = "ORDER_SHIPPED";
pub const ORDER_CANCELLED: &str = "ORDER_CANCELLED";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct NotificationRow {
    pub generation: i64,
    pub id: Uuid,
    pub customer_id: String,
    pub kind: String,
    pub message: String,
    pub order_id: Option<Uuid>,
    /// The order's sealed personal data, holding the email it was sent to.
    pub sent_to: Option<String>,
    pub created_position: i64,
    #[serde(with = "ts")]
    pub created_at: OffsetDateTime,
}

macro_rules! notification_json_pg {
    () => {
        "json_build_object('generation', n.generation, 'id', n.id, 'customer_id', n.customer_id, 'kind', n.kind, \
         'message', n.message, 'order_id', n.order_id, 'sent_to', n.sent_to, 'created_position', n.created_position, \
         'created_at', n.created_at)::text"
    };
}
macro_rules! notification_json_lite {
    () => {
        "json_object('generation', n.generation, 'id', n.id, 'customer_id', n.customer_id, 'kind', n.kind, \
         'message', n.message, 'order_id', n.order_id, 'sent_to', n.sent_to, 'created_position', n.created_position, \
         'created_at', n.created_at)"
    };
}
pub(crate) use {notification_json_lite, notification_json_pg};

const INSERT: Sql = Sql {
    pg: "insert into notifications (generation, id, customer_id, kind, message, order_id, sent_to, created_position, created_at)
         select $1, r.id, r.customer_id, r.kind, r.message, r.order_id, r.sent_to, r.created_position, r.created_at
           from jsonb_to_recordset($2::jsonb) as r(id uuid, customer_id text, kind text, message text, order_id uuid,
                sent_to text, created_position bigint, created_at timestamptz)
         on conflict (generation, id) do nothing",
    lite: "insert into notifications (generation, id, customer_id, kind, message, order_id, sent_to, created_position, created_at)
         select $1, json_extract(value, '$.id'), json_extract(value, '$.customer_id'), json_extract(value, '$.kind'),
                json_extract(value, '$.message'), json_extract(value, '$.order_id'), json_extract(value, '$.sent_to'),
                json_extract(value, '$.created_position'), json_extract(value, '$.created_at')
           from json_each($2) where true
         on conflict (generation, id) do nothing",
};

/// `PersonalDataErased`: the customer's earlier notifications forget whom they went to.
const ERASE: Sql = Sql {
    pg: "update notifications set sent_to = null where generation = $1 and customer_id = $2 and created_position < $3",
    lite: "update notifications set sent_to = null where generation = $1 and customer_id = $2 and created_position < $3",
};

/// What a notification needs of its order, from OrderPlaced (which never changes).
#[derive(Clone, Debug, Default)]
pub(crate) struct Recipient {
    pub customer_id: String,
    pub sealed: Option<String>,
}

impl Recipient {
    fn of(customer_id: &domain::CustomerId, personal_data: &Option<domain::SealedPersonalData>) -> Self {
        Recipient {
            customer_id: customer_id.as_str().to_owned(),
            sealed: personal_data.as_ref().map(|p| p.as_str().to_owned()),
        }
    }
}

/// The recipient of every order a batch ships or cancels that was not placed in the batch
/// itself: read from the order's first event (OrderPlaced), which never changes.
pub(crate) async fn recipients(store: &dyn EventStore, events: &[Decoded<'_>]) -> Result<HashMap<Uuid, Recipient>, ProjectionError> {
    let mut recipients = HashMap::new();
    for decoded in events {
        let (StreamId::Order(id), AnyEvent::Order(event)) = (&decoded.stream, &decoded.event) else {
            continue;
        };
        match event {
            OrderEvent::OrderPlaced {
                customer_id, personal_data, ..
            } => {
                recipients.insert(*id.as_uuid(), Recipient::of(customer_id, personal_data));
            }
            _ if recipients.contains_key(id.as_uuid()) => {}
            _ => {
                let first = store.read_stream(&decoded.recorded.stream_id, 1, 1).await?;
                let placed = first.first().map(commands::decode::<OrderEvent>).transpose()?;
                if let Some(OrderEvent::OrderPlaced {
                    customer_id, personal_data, ..
                }) = placed
                {
                    recipients.insert(*id.as_uuid(), Recipient::of(&customer_id, &personal_data));
                }
            }
        }
    }
    Ok(recipients)
}

fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

pub(crate) async fn write(conn: &mut Conn<'_>, generation: i64, prepared: &Prepared<'_>) -> Result<(), ProjectionError> {
    let mut rows = Vec::new();
    let mut erasures = Vec::new();
    for decoded in &prepared.events {
        if let Some(erasure) = decoded.personal_data_erased() {
            erasures.push(erasure);
            continue;
        }
        let (StreamId::Order(id), AnyEvent::Order(event)) = (&decoded.stream, &decoded.event) else {
            continue;
        };
        let order_id = *id.as_uuid();
        let (kind, message) = match event {
            OrderEvent::OrderPlaced { total, lines, .. } => {
                let items: u32 = lines.iter().map(|l| l.quantity).sum();
                (
                    ORDER_PLACED,
                    format!(
                        "Your order {} was placed: {items} item(s), {total} {}.",
                        short(order_id),
                        domain::CURRENCY_CODE
                    ),
                )
            }
            OrderEvent::OrderShipped {} => (ORDER_SHIPPED, format!("Your order {} has shipped.", short(order_id))),
            OrderEvent::OrderCancelled { reason } => (
                ORDER_CANCELLED,
                match reason {
                    Some(reason) => format!("Your order {} was cancelled: {reason}", short(order_id)),
                    None => format!("Your order {} was cancelled.", short(order_id)),
                },
            ),
            OrderEvent::OrderPreparationStarted {} => continue,
        };
        let Some(recipient) = prepared.recipients.get(&order_id) else {
            tracing::warn!(stream = %decoded.recorded.stream_id, "no OrderPlaced for this order; no notification");
            continue;
        };
        rows.push(NotificationRow {
            generation,
            id: decoded.recorded.event_id,
            customer_id: recipient.customer_id.clone(),
            kind: kind.to_owned(),
            message,
            order_id: Some(order_id),
            sent_to: recipient.sealed.clone(),
            created_position: pos(decoded.recorded.position),
            created_at: decoded.recorded.recorded_at,
        });
    }
    if !rows.is_empty() {
        conn.execute(INSERT, &[Arg::Int(generation), json_arg(&rows)?]).await?;
    }
    for (customer_id, position) in erasures {
        conn.execute(ERASE, &[Arg::Int(generation), Arg::Text(customer_id.to_owned()), Arg::Int(position)])
            .await?;
    }
    Ok(())
}

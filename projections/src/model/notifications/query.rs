//! The notifications read model as the API sees it: [`NotificationView`] and its query.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{notification_json_lite, notification_json_pg, NotificationRow};
use crate::db::{Arg, Sql};
use crate::error::ProjectionError;
use crate::model::read_models::{decode_position_cursor, encode_cursor, limit, serving, Page, ReadModels};

#[derive(Clone, Debug, PartialEq)]
pub struct NotificationView {
    pub id: Uuid,
    pub customer_id: String,
    /// ORDER_PLACED, ORDER_SHIPPED, ORDER_CANCELLED.
    pub kind: String,
    pub message: String,
    pub order_id: Option<Uuid>,
    /// The order's sealed personal data (the API opens the email it was sent to).
    pub sent_to: Option<domain::SealedPersonalData>,
    pub created_at: OffsetDateTime,
}

const NOTIFICATIONS_OF: Sql = Sql {
    pg: concat!(
        "select ",
        notification_json_pg!(),
        " from notifications n where n.generation = ",
        serving!("notifications"),
        " and n.customer_id = $1 and ($2::bigint is null or n.created_position < $2) order by n.created_position desc limit $3"
    ),
    lite: concat!(
        "select ",
        notification_json_lite!(),
        " from notifications n where n.generation = ",
        serving!("notifications"),
        " and n.customer_id = $1 and ($2 is null or n.created_position < $2) order by n.created_position desc limit $3"
    ),
};

impl ReadModels {
    /// A customer's notifications, newest first.
    pub async fn notifications_of(&self, customer: &str, first: usize, after: Option<&str>) -> Result<Page<NotificationView>, ProjectionError> {
        let after = after.map(|c| decode_position_cursor("notification", c)).transpose()?;
        let mut conn = self.conn().await?;
        let rows: Vec<NotificationRow> = conn
            .conn()
            .json_rows(
                NOTIFICATIONS_OF,
                &[Arg::Text(customer.to_owned()), Arg::OptInt(after), Arg::Int(limit(first))],
            )
            .await?;
        let has_next_page = rows.len() > first;
        let items = rows
            .into_iter()
            .take(first)
            .map(|row| {
                let cursor = encode_cursor("notification", &row.created_position.to_string());
                let view = NotificationView {
                    id: row.id,
                    customer_id: row.customer_id,
                    kind: row.kind,
                    message: row.message,
                    order_id: row.order_id,
                    sent_to: row.sent_to.map(domain::SealedPersonalData::new),
                    created_at: row.created_at,
                };
                (cursor, view)
            })
            .collect();
        Ok(Page { items, has_next_page })
    }
}

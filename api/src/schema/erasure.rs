//! `eraseMyPersonalData` and `erasePersonalData` (#15): the command that shreds a customer's
//! data key with the `PersonalDataErased` event (see the `vault` crate and
//! `commands::Commands::erase_personal_data`).

use async_graphql::{Context, SimpleObject};
use domain::CustomerId;
use serde_json::json;
use tracing::Instrument;

use super::api;
use super::mutation::{command_context, commands, span};
use super::scalars::{DateTime, Position};
use crate::auth::Principal;
use crate::error::ApiError;

#[derive(Clone, Debug, SimpleObject)]
pub struct ErasurePayload {
    pub customer_id: String,
    /// When the erasure answering this request was recorded (an earlier one when nothing
    /// new was sealed since).
    pub erased_at: DateTime,
    /// Position of the PersonalDataErased event: pass it as minPosition to read the orders
    /// and notifications without it.
    pub position: Position,
}

/// Erases `customer_id`'s personal data as `who` (the resolvers check who may).
pub(super) async fn erase(ctx: &Context<'_>, who: &Principal, customer_id: &str) -> Result<ErasurePayload, ApiError> {
    let customer = CustomerId::parse(customer_id)?;
    // The erasure is recorded in the stream `customer-<id>`, whose length the store bounds.
    let max = store::event::MAX_STREAM_ID_LEN - domain::ids::CUSTOMER_CATEGORY.len() - 1;
    if customer_id.chars().count() > max {
        return Err(ApiError::BadUserInput(format!("customerId must be at most {max} characters")));
    }
    let api = api(ctx)?;
    let cmd = command_context(ctx, api, who, None, "erasePersonalData", json!({ "customerId": customer_id }))?;
    let erasure = commands(ctx)?
        .erase_personal_data(&cmd, &api.vault, &customer)
        .instrument(span("erasePersonalData", &cmd, &customer.stream_id()))
        .await?;
    Ok(ErasurePayload {
        customer_id: erasure.customer_id.into(),
        erased_at: erasure.erased_at.into(),
        position: erasure.position.into(),
    })
}

//! `Cart`: from the carts read model, a command's outcome or a past
//! version of the stream; `history` reads the cart's events through the
//! [`HistoryLoader`](super::HistoryLoader).

use async_graphql::{Context, Enum, Object};
use uuid::Uuid;

use super::history_loader::{history_loader, HistoryKey};
use super::line::CartLine;
use super::{recorded_at, CartEvent, Money, Timestamps};
use crate::error::ApiError;
use crate::schema::connection::{CartEventConnection, CartEventEdge, PageInfo};
use crate::schema::numbers::{line_total, parse_version_cursor, to_int};
use crate::schema::page_size;
use crate::schema::scalars::{DateTime, UuidScalar};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(name = "CartStatus")]
pub enum CartStatus {
    Open,
    CheckedOut,
}

impl From<domain::CartStatus> for CartStatus {
    fn from(s: domain::CartStatus) -> Self {
        match s {
            domain::CartStatus::Open => CartStatus::Open,
            domain::CartStatus::CheckedOut => CartStatus::CheckedOut,
        }
    }
}

impl From<CartStatus> for domain::CartStatus {
    fn from(s: CartStatus) -> Self {
        match s {
            CartStatus::Open => domain::CartStatus::Open,
            CartStatus::CheckedOut => domain::CartStatus::CheckedOut,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Cart {
    pub id: Uuid,
    pub customer_id: String,
    pub status: domain::CartStatus,
    /// The stream version this state includes.
    pub version: u64,
    pub lines: Vec<CartLine>,
    pub order_id: Option<Uuid>,
    pub times: Timestamps,
}

impl Cart {
    pub fn from_state(cart: &domain::Cart, version: u64, times: Timestamps) -> Self {
        Cart {
            id: *cart.id.as_uuid(),
            customer_id: cart.customer_id.as_str().to_owned(),
            status: cart.status,
            version,
            lines: cart.lines.iter().map(CartLine::from).collect(),
            order_id: cart.order_id.map(|o| *o.as_uuid()),
            times,
        }
    }

    fn stream_id(&self) -> String {
        domain::CartId::from_uuid(self.id).stream_id()
    }
}

impl From<projections::CartView> for Cart {
    fn from(v: projections::CartView) -> Self {
        Cart {
            id: v.id,
            customer_id: v.customer_id,
            status: v.status,
            version: v.version,
            lines: v.lines.into_iter().map(CartLine::from).collect(),
            order_id: v.order_id,
            times: Timestamps::known(v.created_at, v.updated_at),
        }
    }
}

#[Object]
impl Cart {
    async fn id(&self) -> UuidScalar {
        self.id.into()
    }

    async fn customer_id(&self) -> &str {
        &self.customer_id
    }

    async fn status(&self) -> CartStatus {
        self.status.into()
    }

    /// Number of events in the cart's stream: the expectedVersion for the next command.
    async fn version(&self) -> i32 {
        to_int(self.version)
    }

    async fn lines(&self) -> &[CartLine] {
        &self.lines
    }

    /// Sum of the quantities of all lines.
    async fn item_count(&self) -> i32 {
        to_int(self.lines.iter().map(|l| u64::from(l.quantity)).sum::<u64>())
    }

    async fn subtotal(&self) -> Money {
        Money(
            self.lines
                .iter()
                .fold(0i64, |sum, l| sum.saturating_add(line_total(l.unit_price, l.quantity))),
        )
    }

    /// Set once the cart is checked out.
    async fn order_id(&self) -> Option<UuidScalar> {
        self.order_id.map(UuidScalar)
    }

    async fn created_at(&self, ctx: &Context<'_>) -> Result<DateTime, ApiError> {
        match self.times.created {
            Some(t) => Ok(DateTime(t)),
            None => recorded_at(ctx, &self.stream_id(), 1).await,
        }
    }

    async fn updated_at(&self, ctx: &Context<'_>) -> Result<DateTime, ApiError> {
        match self.times.updated {
            Some(t) => Ok(DateTime(t)),
            None => recorded_at(ctx, &self.stream_id(), self.version).await,
        }
    }

    /// Every event of this cart, oldest first: the audit trail. Read from the event
    /// store, up to the version this cart object shows.
    #[graphql(complexity = "crate::schema::page_cost(first, 50, child_complexity)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CartEventConnection, ApiError> {
        let first = page_size(first, 50)?;
        let after_version = after.as_deref().map(parse_version_cursor).transpose()?.unwrap_or(0);
        let remaining = self.version.saturating_sub(after_version);
        let want = remaining.min(first as u64);
        let mut edges = Vec::new();
        if want > 0 {
            let key = HistoryKey {
                stream_id: self.stream_id(),
                from_version: after_version + 1,
                limit: want as usize,
            };
            let recorded = history_loader(ctx)?.load_one(key).await?.unwrap_or_default();
            for event in recorded.iter().filter(|e| e.version <= self.version) {
                let node = CartEvent::from_recorded(event)?;
                edges.push(CartEventEdge {
                    cursor: event.version.to_string(),
                    node,
                });
            }
        }
        let has_next_page = after_version + (edges.len() as u64) < self.version;
        let page_info = PageInfo::new(&edges, |e| &e.cursor, has_next_page, after_version > 0);
        Ok(CartEventConnection { edges, page_info })
    }
}

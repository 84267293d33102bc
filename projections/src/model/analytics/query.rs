//! The analytics read model as the API sees it: [`AnalyticsView`] and its query.

use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{DayRow, SkuRow};
use crate::db::{format_time, Arg, Sql};
use crate::error::ProjectionError;
use crate::model::read_models::{count, serving, ReadModels};

/// What the analytics read model says (see `model::analytics` for the choice).
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyticsView {
    /// Most added first.
    pub skus: Vec<SkuStats>,
    /// Newest day first.
    pub days: Vec<DayStats>,
    /// Carts still open.
    pub open_carts: u64,
    /// Open carts with at least one item and no change for longer than asked.
    pub abandoned_carts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkuStats {
    pub sku: String,
    pub add_events: u64,
    pub units_added: u64,
    pub units_ordered: u64,
    pub revenue_ordered: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayStats {
    /// UTC, YYYY-MM-DD.
    pub day: String,
    pub carts_created: u64,
    pub carts_checked_out: u64,
    pub orders_placed: u64,
    pub orders_shipped: u64,
    pub orders_cancelled: u64,
    pub revenue_placed: i64,
}

const TOP_SKUS: Sql = Sql {
    pg: concat!(
        "select json_build_object('sku', s.sku, 'add_events', s.add_events, 'units_added', s.units_added, \
         'units_ordered', s.units_ordered, 'revenue_ordered', s.revenue_ordered)::text
           from analytics_skus s where s.generation = ",
        serving!("analytics"),
        " order by s.units_added desc, s.sku limit $1"
    ),
    lite: concat!(
        "select json_object('sku', s.sku, 'add_events', s.add_events, 'units_added', s.units_added, \
         'units_ordered', s.units_ordered, 'revenue_ordered', s.revenue_ordered)
           from analytics_skus s where s.generation = ",
        serving!("analytics"),
        " order by s.units_added desc, s.sku limit $1"
    ),
};

const LAST_DAYS: Sql = Sql {
    pg: concat!(
        "select json_build_object('day', d.day, 'carts_created', d.carts_created, 'carts_checked_out', d.carts_checked_out, \
         'orders_placed', d.orders_placed, 'orders_shipped', d.orders_shipped, 'orders_cancelled', d.orders_cancelled, \
         'revenue_placed', d.revenue_placed)::text
           from analytics_daily d where d.generation = ",
        serving!("analytics"),
        " order by d.day desc limit $1"
    ),
    lite: concat!(
        "select json_object('day', d.day, 'carts_created', d.carts_created, 'carts_checked_out', d.carts_checked_out, \
         'orders_placed', d.orders_placed, 'orders_shipped', d.orders_shipped, 'orders_cancelled', d.orders_cancelled, \
         'revenue_placed', d.revenue_placed)
           from analytics_daily d where d.generation = ",
        serving!("analytics"),
        " order by d.day desc limit $1"
    ),
};

const OPEN_CARTS: Sql = Sql {
    pg: concat!(
        "select json_build_object('open', count(*), 'abandoned', coalesce(sum(case when c.item_count > 0 and c.updated_at < $1::timestamptz then 1 else 0 end), 0))::text
           from carts c where c.generation = ",
        serving!("carts"),
        " and c.status = 'OPEN'"
    ),
    lite: concat!(
        "select json_object('open', count(*), 'abandoned', coalesce(sum(case when c.item_count > 0 and c.updated_at < $1 then 1 else 0 end), 0))
           from carts c where c.generation = ",
        serving!("carts"),
        " and c.status = 'OPEN'"
    ),
};

#[derive(Deserialize)]
struct CartCounts {
    open: i64,
    abandoned: i64,
}

impl ReadModels {
    /// The operator's dashboard: the `top_skus` most added skus, the last `days` days, and
    /// the open carts, of which those with items and no change for `abandoned_after` count
    /// as abandoned.
    pub async fn analytics(&self, top_skus: usize, days: usize, abandoned_after: Duration) -> Result<AnalyticsView, ProjectionError> {
        let mut conn = self.conn().await?;
        let mut conn = conn.conn();
        let skus: Vec<SkuRow> = conn.json_rows(TOP_SKUS, &[Arg::Int(count(top_skus))]).await?;
        let day_rows: Vec<DayRow> = conn.json_rows(LAST_DAYS, &[Arg::Int(count(days))]).await?;
        let cutoff = OffsetDateTime::now_utc() - abandoned_after;
        let counts: Vec<CartCounts> = conn.json_rows(OPEN_CARTS, &[Arg::Text(format_time(cutoff))]).await?;
        let counts = counts.into_iter().next().unwrap_or(CartCounts { open: 0, abandoned: 0 });
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(AnalyticsView {
            skus: skus
                .into_iter()
                .map(|s| SkuStats {
                    sku: s.sku,
                    add_events: n(s.add_events),
                    units_added: n(s.units_added),
                    units_ordered: n(s.units_ordered),
                    revenue_ordered: s.revenue_ordered,
                })
                .collect(),
            days: day_rows
                .into_iter()
                .map(|d| DayStats {
                    day: d.day,
                    carts_created: n(d.carts_created),
                    carts_checked_out: n(d.carts_checked_out),
                    orders_placed: n(d.orders_placed),
                    orders_shipped: n(d.orders_shipped),
                    orders_cancelled: n(d.orders_cancelled),
                    revenue_placed: d.revenue_placed,
                })
                .collect(),
            open_carts: n(counts.open),
            abandoned_carts: n(counts.abandoned),
        })
    }
}

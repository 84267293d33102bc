//! The products read model as the API sees it: [`ProductView`] and its queries.

use super::{product_json_lite, product_json_pg, ProductRow};
use crate::db::{Arg, Sql};
use crate::error::ProjectionError;
use crate::model::read_models::{decode_cursor, encode_cursor, limit, serving, u64_of, Page, ReadModels};
use crate::model::to_u32;

#[derive(Clone, Debug, PartialEq)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub on_hand: u32,
    pub reserved: u32,
    pub available: u32,
    pub version: u64,
}

const PRODUCT_BY_SKU: Sql = Sql {
    pg: concat!(
        "select ",
        product_json_pg!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and p.sku = $1"
    ),
    lite: concat!(
        "select ",
        product_json_lite!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and p.sku = $1"
    ),
};

const PRODUCTS: Sql = Sql {
    pg: concat!(
        "select ",
        product_json_pg!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and ($1::text is null or p.sku > $1) order by p.sku limit $2"
    ),
    lite: concat!(
        "select ",
        product_json_lite!(),
        " from products p where p.generation = ",
        serving!("products"),
        " and ($1 is null or p.sku > $1) order by p.sku limit $2"
    ),
};

impl ReadModels {
    pub async fn product(&self, sku: &str) -> Result<Option<ProductView>, ProjectionError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ProductRow> = conn.conn().json_rows(PRODUCT_BY_SKU, &[Arg::Text(sku.to_owned())]).await?;
        rows.into_iter().next().map(product_view).transpose()
    }

    /// The catalog by sku.
    pub async fn products(&self, first: usize, after: Option<&str>) -> Result<Page<ProductView>, ProjectionError> {
        let after = after.map(|c| decode_cursor("product", c)).transpose()?;
        let mut conn = self.conn().await?;
        let rows: Vec<ProductRow> = conn.conn().json_rows(PRODUCTS, &[Arg::OptText(after), Arg::Int(limit(first))]).await?;
        let has_next_page = rows.len() > first;
        let items = rows
            .into_iter()
            .take(first)
            .map(|row| Ok((encode_cursor("product", &row.sku), product_view(row)?)))
            .collect::<Result<_, ProjectionError>>()?;
        Ok(Page { items, has_next_page })
    }
}

fn product_view(row: ProductRow) -> Result<ProductView, ProjectionError> {
    Ok(ProductView {
        sku: row.sku,
        name: row.name,
        price: row.price,
        on_hand: to_u32(row.on_hand, "on hand")?,
        reserved: to_u32(row.reserved, "reserved")?,
        available: to_u32(row.available, "available")?,
        version: u64_of(row.version, "version")?,
    })
}

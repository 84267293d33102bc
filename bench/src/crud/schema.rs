//! The baseline's GraphQL types and resolvers: only the fields the driver selects.
//! Statements are parameterised and prepared (sqlx caches them per connection).

use async_graphql::{Context, Error, ErrorExtensions, InputObject, Object, SimpleObject};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::token::Claims;

/// An error with the contract's `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

fn internal(e: sqlx::Error) -> Error {
    coded("INTERNAL_SERVER_ERROR", e.to_string())
}

fn caller<'a>(ctx: &'a Context<'_>) -> Result<&'a Claims, Error> {
    ctx.data_opt::<Claims>().ok_or_else(|| coded("UNAUTHENTICATED", "sign in first"))
}

fn pool<'a>(ctx: &'a Context<'_>) -> Result<&'a PgPool, Error> {
    ctx.data::<PgPool>()
}

#[derive(SimpleObject)]
pub struct CartLine {
    sku: String,
    quantity: i32,
}

#[derive(SimpleObject)]
pub struct Cart {
    id: Uuid,
    version: i32,
    lines: Vec<CartLine>,
}

/// `position` is the cart's version as a string: the baseline has no global log.
#[derive(SimpleObject)]
pub struct CartPayload {
    cart: Cart,
    position: String,
}

#[derive(SimpleObject)]
pub struct Product {
    sku: String,
}

#[derive(SimpleObject)]
pub struct ProductPayload {
    product: Product,
    position: String,
}

#[derive(InputObject)]
pub struct CreateCartInput {
    cart_id: Option<Uuid>,
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct AddItemToCartInput {
    cart_id: Uuid,
    sku: String,
    quantity: i32,
    expected_version: Option<i32>,
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RegisterProductInput {
    sku: String,
    name: String,
    price: String,
    #[allow(dead_code)]
    initial_stock: Option<i32>,
}

pub struct Query;

#[Object]
impl Query {
    /// One query; another customer's cart is absent, as in cartsource.
    async fn cart(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Cart>, Error> {
        let who = caller(ctx)?;
        let rows = sqlx::query(
            "select c.version, l.sku, l.quantity from carts c left join cart_lines l on l.cart_id = c.id \
             where c.id = $1 and (c.customer_id = $2 or $3) order by l.sku",
        )
        .bind(id)
        .bind(&who.sub)
        .bind(who.role == "admin")
        .fetch_all(pool(ctx)?)
        .await
        .map_err(internal)?;
        let Some(first) = rows.first() else { return Ok(None) };
        let version: i32 = first.try_get(0).map_err(internal)?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(sku) = row.try_get::<Option<String>, _>(1).map_err(internal)? {
                lines.push(CartLine {
                    sku,
                    quantity: row.try_get(2).map_err(internal)?,
                });
            }
        }
        Ok(Some(Cart { id, version, lines }))
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn create_cart(&self, ctx: &Context<'_>, input: Option<CreateCartInput>) -> Result<CartPayload, Error> {
        let who = caller(ctx)?;
        let id = input.and_then(|i| i.cart_id).unwrap_or_else(Uuid::now_v7);
        let created = sqlx::query("insert into carts (id, customer_id, version) values ($1, $2, 1) on conflict (id) do nothing")
            .bind(id)
            .bind(&who.sub)
            .execute(pool(ctx)?)
            .await
            .map_err(internal)?;
        if created.rows_affected() == 0 {
            return Err(coded("BAD_USER_INPUT", "a cart with this id exists"));
        }
        let cart = Cart {
            id,
            version: 1,
            lines: Vec::new(),
        };
        Ok(CartPayload {
            cart,
            position: "1".to_owned(),
        })
    }

    /// One transaction: bump the version where the caller owns the cart (and the
    /// version matches, when given), upsert the line, read the lines back.
    async fn add_item_to_cart(&self, ctx: &Context<'_>, input: AddItemToCartInput) -> Result<CartPayload, Error> {
        let who = caller(ctx)?;
        if !(1..=999).contains(&input.quantity) {
            return Err(coded("BAD_USER_INPUT", "quantity must be between 1 and 999"));
        }
        let mut tx = pool(ctx)?.begin().await.map_err(internal)?;
        let bumped = sqlx::query(
            "with c as (update carts set version = version + 1 \
                 where id = $1 and customer_id = $2 and ($3::int4 is null or version = $3) returning id, version), \
             l as (insert into cart_lines (cart_id, sku, quantity) select id, $4, $5 from c \
                 on conflict (cart_id, sku) do update set quantity = cart_lines.quantity + excluded.quantity) \
             select version from c",
        )
        .bind(input.cart_id)
        .bind(&who.sub)
        .bind(input.expected_version)
        .bind(&input.sku)
        .bind(input.quantity)
        .fetch_optional(&mut *tx)
        .await
        .map_err(constraint)?;
        let Some(row) = bumped else {
            drop(tx);
            return Err(why_not(pool(ctx)?, input.cart_id, &who.sub).await);
        };
        let version: i32 = row.try_get(0).map_err(internal)?;
        let lines = sqlx::query_as::<_, (String, i32)>("select sku, quantity from cart_lines where cart_id = $1 order by sku")
            .bind(input.cart_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        let lines = lines.into_iter().map(|(sku, quantity)| CartLine { sku, quantity }).collect();
        Ok(CartPayload {
            cart: Cart {
                id: input.cart_id,
                version,
                lines,
            },
            position: version.to_string(),
        })
    }

    async fn register_product(&self, ctx: &Context<'_>, input: RegisterProductInput) -> Result<ProductPayload, Error> {
        if caller(ctx)?.role != "admin" {
            return Err(coded("FORBIDDEN", "admin only"));
        }
        sqlx::query("insert into products (sku, name, price) values ($1, $2, $3::numeric) on conflict (sku) do nothing")
            .bind(&input.sku)
            .bind(&input.name)
            .bind(&input.price)
            .execute(pool(ctx)?)
            .await
            .map_err(constraint)?;
        Ok(ProductPayload {
            product: Product { sku: input.sku },
            position: "1".to_owned(),
        })
    }
}

/// A violated constraint is the caller's input (unknown sku, line over 999, bad price).
fn constraint(e: sqlx::Error) -> Error {
    match e.as_database_error().and_then(|d| d.code()) {
        Some(code) if code == "23503" => coded("NOT_FOUND", "no such product"),
        Some(code) if code == "23514" || code == "22P02" => coded("BAD_USER_INPUT", "the line or price is out of range"),
        _ => internal(e),
    }
}

/// Only on the failure path: absent (or someone else's) cart, or a stale expectedVersion.
async fn why_not(pool: &PgPool, cart_id: Uuid, sub: &str) -> Error {
    match sqlx::query_scalar::<_, String>("select customer_id from carts where id = $1")
        .bind(cart_id)
        .fetch_optional(pool)
        .await
    {
        Ok(Some(owner)) if owner == sub => coded("CONCURRENCY_CONFLICT", "the cart is at another version"),
        Ok(_) => coded("NOT_FOUND", "no such cart"),
        Err(e) => internal(e),
    }
}

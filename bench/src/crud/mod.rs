//! The baseline: a minimal CRUD GraphQL server on cartsource's stack (axum 0.8,
//! async-graphql 7.2, sqlx on Postgres, HS256 JWTs with `sub`, `role`, `exp`) with plain
//! tables, answering the same operation shapes the driver sends. It is the simplest
//! fast honest implementation: `addItemToCart` is one transaction that bumps the cart's
//! version (checking the owner in the same statement) and upserts the line; `cart(id)` is
//! one query. It has no event log, no read model and no subscriptions: it shows what the
//! stack costs, so the report can say what cartsource's design costs on top.

mod schema;

use std::net::SocketAddr;

use async_graphql::{EmptySubscription, Schema};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::token;

type CrudSchema = Schema<schema::Query, schema::Mutation, EmptySubscription>;

/// Plain tables: the current state only. The check constraint is the line's 1 to 999
/// rule; the foreign key is "the product exists".
const DDL: &str = "
create table if not exists products (
    sku   text primary key,
    name  text not null,
    price numeric(12, 2) not null check (price > 0)
);
create table if not exists carts (
    id          uuid primary key,
    customer_id text not null,
    version     integer not null
);
create table if not exists cart_lines (
    cart_id  uuid not null references carts (id),
    sku      text not null references products (sku),
    quantity integer not null check (quantity between 1 and 999),
    primary key (cart_id, sku)
);";

/// Creates the tables (idempotent) and serves until the process is killed.
pub async fn serve(listen: SocketAddr, database_url: &str, pool_size: u32) -> anyhow::Result<()> {
    // Like cartsource's store: no ping before every acquire (sqlx's default costs a round trip).
    let pool: PgPool = PgPoolOptions::new()
        .max_connections(pool_size)
        .test_before_acquire(false)
        .connect(database_url)
        .await?;
    sqlx::raw_sql(DDL).execute(&pool).await?;
    let schema = Schema::build(schema::Query, schema::Mutation, EmptySubscription).data(pool).finish();
    let app = Router::new()
        .route("/graphql", post(graphql))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(schema);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The same JWT check as cartsource: no header is anonymous, a bad one is refused.
async fn graphql(State(schema): State<CrudSchema>, headers: HeaderMap, request: GraphQLRequest) -> GraphQLResponse {
    let mut request = request.into_inner();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let claims = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| token::verify(t, token::BENCH_SECRET.as_bytes()).ok());
        match claims {
            Some(claims) => request = request.data(claims),
            None => {
                let mut error = schema::coded("UNAUTHENTICATED", "the token does not verify").into_server_error(Default::default());
                error.locations.clear();
                return async_graphql::Response::from_errors(vec![error]).into();
            }
        }
    }
    schema.execute(request).await.into()
}

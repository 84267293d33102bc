//! The schema driven directly (no HTTP), for what a black-box test cannot reach
//! cheaply: a bounded minPosition wait ending in CONSISTENCY_TIMEOUT, an internal
//! failure answered without detail, and the query limits against GraphiQL's own
//! introspection query.

use std::time::{Duration, Instant};

use api::auth::{Principal, Role};
use api::context::ApiContext;
use api::schema::{build_schema, AppSchema};
use async_graphql::Request;
use serde_json::json;

async fn schema_on(url: &str, consistency_timeout: Duration) -> (AppSchema, store::Database) {
    let db = store::open(url).await.expect("open the store");
    let master_key = vault::MasterKey::from_hex(&vault::MasterKey::generate_hex()).expect("a master key");
    let mut ctx = ApiContext::new(db.clone(), projections::Projections::observer(db.clone()), master_key);
    ctx.consistency_timeout = consistency_timeout;
    (build_schema(ctx), db)
}

fn alice() -> Principal {
    Principal {
        id: "alice".into(),
        role: Role::Customer,
    }
}

async fn run(schema: &AppSchema, principal: Option<Principal>, query: &str, variables: serde_json::Value) -> serde_json::Value {
    let mut request = Request::new(query).variables(async_graphql::Variables::from_json(variables));
    if let Some(principal) = principal {
        request = request.data(principal);
    }
    serde_json::to_value(schema.execute(request).await).expect("a JSON response")
}

#[tokio::test]
async fn a_read_that_cannot_catch_up_answers_consistency_timeout() {
    let (schema, _db) = schema_on(&store::testing::sqlite(), Duration::from_millis(200)).await;
    // No workers run in this process: the carts projection never reaches the position.
    let started = Instant::now();
    let response = run(
        &schema,
        Some(alice()),
        "query($p: Position) { cart(id: \"00000000-0000-4000-8000-000000000000\", minPosition: $p) { id } }",
        json!({"p": "18446744073709551615"}),
    )
    .await;
    assert_eq!(response["errors"][0]["extensions"]["code"], "CONSISTENCY_TIMEOUT", "{response}");
    assert!(started.elapsed() < Duration::from_secs(5), "the wait is bounded: {:?}", started.elapsed());
}

/// A database that went away answers UNAVAILABLE (retry), with no internal detail; an
/// unexpected failure answers INTERNAL_SERVER_ERROR the same way (unit-tested in
/// `api::error`).
#[tokio::test]
async fn a_database_that_went_away_is_answered_without_detail() {
    let (schema, db) = schema_on(&store::testing::sqlite(), Duration::from_secs(1)).await;
    // A mutation works while the database is there.
    let created = run(
        &schema,
        Some(alice()),
        "mutation { createCart { cart { id version customerId } position } }",
        json!({}),
    )
    .await;
    assert_eq!(created["data"]["createCart"]["cart"]["version"], 1, "{created}");
    assert_eq!(created["data"]["createCart"]["cart"]["customerId"], "alice");
    let cart = created["data"]["createCart"]["cart"]["id"].clone();

    let store::Database::Sqlite(sqlite) = &db else {
        panic!("a SQLite database")
    };
    sqlite.close().await;
    for (query, variables) in [
        ("query($id: UUID!) { cart(id: $id) { id } }", json!({"id": cart})),
        ("query($id: UUID!) { cartAt(id: $id, version: 1) { id } }", json!({"id": cart})),
        (
            "mutation($id: UUID!) { clearCart(input: {cartId: $id}) { position } }",
            json!({"id": cart}),
        ),
    ] {
        let response = run(&schema, Some(alice()), query, variables).await;
        let error = &response["errors"][0];
        assert_eq!(error["extensions"], json!({"code": "UNAVAILABLE"}), "{response}");
        assert_eq!(
            error["message"], "the database is unavailable for a moment; try again",
            "no internal detail: {response}"
        );
    }
}

/// The introspection query of the GraphiQL bundled with the server (graphql-js
/// `getIntrospectionQuery()` with 9 levels of `ofType`): its deepest path,
/// `__schema.types.fields.args.type.ofType*9.kind`, is 15 levels.
pub(crate) const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}
"#;

#[tokio::test]
async fn graphiql_fits_the_limits_and_abuse_does_not() {
    let (schema, _db) = schema_on(&store::testing::sqlite(), Duration::from_secs(1)).await;
    let response = run(&schema, None, INTROSPECTION, json!({})).await;
    assert!(response.get("errors").is_none(), "introspection passes the limits: {response}");
    assert_eq!(response["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(response["data"]["__schema"]["mutationType"]["name"], "Mutation");
    assert_eq!(response["data"]["__schema"]["subscriptionType"]["name"], "Subscription");

    // Wide: pages of pages multiply.
    let wide = "{ me { carts(first: 100) { nodes { history(first: 100) { nodes { version actor } } } } } }";
    let response = run(&schema, Some(alice()), wide, json!({})).await;
    assert_eq!(response["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{response}");
    // Deep: introspection nested past the depth limit.
    let deep = "{ __schema { types { fields { type { fields { type { fields { type { fields { type { fields { type { fields { type { fields { name } } } } } } } } } } } } } } } }";
    let response = run(&schema, None, deep, json!({})).await;
    assert_eq!(response["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{response}");
    // Ordinary front-end queries fit.
    let ordinary = "{ me { carts { nodes { id version lines { sku quantity unitPrice { amount } } subtotal { amount } history(first: 20) { nodes { version occurredAt } } } } } }";
    let response = run(&schema, Some(alice()), ordinary, json!({})).await;
    assert!(response.get("errors").is_none(), "{response}");
}

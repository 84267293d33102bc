//! Archiving over GraphQL (#15), on both backends: only an admin archives, only carts; an
//! archived cart answers ARCHIVED (with the stream and its version) to every read and every
//! command, never INTERNAL_SERVER_ERROR; other carts are untouched.

use crate::support::{add_item, create_cart, gql_data, gql_error, gql_error_code, register_product, spawn_server};
use api::auth::Role;
use serde_json::json;

const ARCHIVE: &str = "mutation($s: String!) { archiveStream(streamId: $s) { streamId version eventsMoved alreadyArchived position } }";

async fn archived_carts_answer_archived(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 1000).await;
    let cart = create_cart(&server, &alice).await;
    add_item(&server, &alice, &cart, "apple", 2).await;
    let other = create_cart(&server, &alice).await;
    let stream = format!("cart-{cart}");

    assert_eq!(gql_error_code(&server, Some(&alice), ARCHIVE, json!({"s": stream})).await, "FORBIDDEN");
    assert_eq!(
        gql_error_code(&server, Some(&admin), ARCHIVE, json!({"s": "product-apple"})).await,
        "BAD_USER_INPUT"
    );
    let nobody = format!("cart-{}", uuid::Uuid::now_v7());
    assert_eq!(gql_error_code(&server, Some(&admin), ARCHIVE, json!({"s": nobody})).await, "NOT_FOUND");

    let archived = gql_data(&server, Some(&admin), ARCHIVE, json!({"s": stream})).await["archiveStream"].clone();
    assert_eq!(
        (
            &archived["streamId"],
            &archived["version"],
            &archived["eventsMoved"],
            &archived["alreadyArchived"]
        ),
        (&json!(stream), &json!(2), &json!(2), &json!(false))
    );
    let position = archived["position"].as_str().expect("a position").to_owned();
    let again = gql_data(&server, Some(&admin), ARCHIVE, json!({"s": stream})).await["archiveStream"].clone();
    assert_eq!(
        (&again["alreadyArchived"], &again["eventsMoved"], &again["position"]),
        (&json!(true), &json!(0), &json!(null))
    );

    // Reads: the read model (once it applied the archive), time travel, history, the admin's stream view.
    let expect_archived = |error: serde_json::Value| {
        assert_eq!(
            error["extensions"],
            json!({"code": "ARCHIVED", "streamId": stream, "archivedVersion": 2}),
            "{error}"
        );
    };
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            "query($id: UUID!, $p: Position) { cart(id: $id, minPosition: $p) { id } }",
            json!({"id": cart, "p": position}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            "query($id: UUID!) { cartAt(id: $id, version: 1) { version } }",
            json!({"id": cart}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            "query($id: UUID!) { cartAt(id: $id, at: \"2999-01-01T00:00:00Z\") { version history { edges { node { version } } } } }",
            json!({"id": cart}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&admin),
            "query($s: String!) { streamEvents(streamId: $s) { version } }",
            json!({"s": stream}),
        )
        .await,
    );

    // Commands, with and without an expected version.
    let add = "mutation($input: AddItemToCartInput!) { addItemToCart(input: $input) { cart { version } } }";
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            add,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1}}),
        )
        .await,
    );
    expect_archived(
        gql_error(
            &server,
            Some(&alice),
            add,
            json!({"input": {"cartId": cart, "sku": "apple", "quantity": 1, "expectedVersion": 2}}),
        )
        .await,
    );

    // The customer's list no longer has it; the other cart works as before.
    let mine = gql_data(
        &server,
        Some(&alice),
        "query { me { carts(first: 10) { edges { node { id } } } } }",
        json!({}),
    )
    .await;
    let ids: Vec<&str> = mine["me"]["carts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![other.as_str()]);
    let added = add_item(&server, &alice, &other, "apple", 1).await;
    assert_eq!(added["cart"]["version"], 2, "{added}");
    server.stop().await;
}

on_both_backends!(archived_carts_answer_archived);

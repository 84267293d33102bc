//! `streamEvents`: one stream's events for admins (the admin console's stream view),
//! paged by version, on both backends; FORBIDDEN for customers, UNAUTHENTICATED without
//! a token, BAD_USER_INPUT for a bad page.

use api::auth::Role;
use serde_json::json;

use crate::support::{add_item, create_cart, gql_data, gql_error_code, register_product, spawn_server};

const QUERY: &str =
    "query($s: String!, $after: Int, $first: Int) { streamEvents(streamId: $s, afterVersion: $after, first: $first) { streamId version type position data } }";

fn versions(events: &serde_json::Value) -> Vec<u64> {
    let events = events.as_array().expect("a list");
    events.iter().map(|e| e["version"].as_u64().expect("version")).collect()
}

async fn admins_read_one_stream_page_by_page(database_url: String) {
    let server = spawn_server(database_url).await;
    let admin = server.token("ops", Role::Admin);
    let alice = server.token("alice", Role::Customer);
    register_product(&server, &admin, "apple", "Apple", "0.50", 10).await;
    let cart = create_cart(&server, &alice).await;
    for _ in 0..3 {
        add_item(&server, &alice, &cart, "apple", 1).await;
    }
    let stream = format!("cart-{cart}");

    let all = gql_data(&server, Some(&admin), QUERY, json!({"s": stream})).await["streamEvents"].clone();
    assert_eq!(versions(&all), [1, 2, 3, 4], "{all}");
    assert!(all.as_array().expect("a list").iter().all(|e| e["streamId"] == stream.as_str()), "{all}");
    assert_eq!(all[0]["type"], "CartCreated");
    assert_eq!(all[1]["type"], "ItemAddedToCart");
    assert_eq!(all[1]["data"]["sku"], "apple", "{all}");

    let page = gql_data(&server, Some(&admin), QUERY, json!({"s": stream, "after": 1, "first": 2})).await["streamEvents"].clone();
    assert_eq!(versions(&page), [2, 3], "{page}");

    let none = gql_data(&server, Some(&admin), QUERY, json!({"s": "cart-00000000-0000-4000-8000-000000000000"})).await;
    assert_eq!(none["streamEvents"], json!([]));

    assert_eq!(gql_error_code(&server, Some(&alice), QUERY, json!({"s": stream})).await, "FORBIDDEN");
    assert_eq!(gql_error_code(&server, None, QUERY, json!({"s": stream})).await, "UNAUTHENTICATED");
    for bad in [json!({"s": stream, "first": 101}), json!({"s": stream, "after": -1}), json!({"s": ""})] {
        assert_eq!(gql_error_code(&server, Some(&admin), QUERY, bad.clone()).await, "BAD_USER_INPUT", "{bad}");
    }
    server.stop().await;
}

on_both_backends!(admins_read_one_stream_page_by_page);

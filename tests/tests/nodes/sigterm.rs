//! SIGTERM of an API node under load: requests it is still answering finish with their
//! answer, its WebSocket clients get close code 1001 (going away: reconnect), and a client
//! that subscribes again on the other node with `afterVersion` misses nothing and sees
//! nothing twice; the node exits 0.

use std::time::{Duration, Instant};

use api::auth::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Client};
use crate::harness::Cluster;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CART_CHANGED: &str = "subscription($id: UUID!, $after: Int) { cartChanged(cartId: $id, afterVersion: $after) { event { version } } }";

/// graphql-transport-ws by hand, to see the close frame: init, ack, subscribe.
async fn subscribe(ws_url: &str, token: &str, cart: &str, after: i64) -> Ws {
    let mut request = ws_url.into_client_request().expect("a WebSocket request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("a header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    ws.send(Message::Text(init.to_string().into())).await.expect("init");
    match next(&mut ws).await {
        Next::Message(m) if m["type"] == "connection_ack" => {}
        other => panic!("expected connection_ack, got {other:?}"),
    }
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": CART_CHANGED, "variables": {"id": cart, "after": after}}});
    ws.send(Message::Text(subscribe.to_string().into())).await.expect("subscribe");
    ws
}

#[derive(Debug)]
enum Next {
    Message(Value),
    Closed(Option<u16>),
}

async fn next(ws: &mut Ws) -> Next {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("something within 30 s");
        match item {
            Some(Ok(Message::Text(text))) => return Next::Message(serde_json::from_str(text.as_str()).expect("JSON")),
            Some(Ok(Message::Close(frame))) => return Next::Closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Next::Closed(None),
        }
    }
}

/// The version of a `next` message; `None` for anything else.
fn version(message: &Value) -> Option<i64> {
    (message["type"] == "next").then(|| message["payload"]["data"]["cartChanged"]["event"]["version"].as_i64())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_requests_closes_websockets_with_1001_and_clients_resume_elsewhere() {
    let mut cluster = Cluster::start(2, 1, Vec::new()).await;
    let api = cluster.api_nodes();
    let worker = cluster.workers()[0];
    let (leaving, staying) = (api[0], api[1]);
    let (leaving_url, staying_url) = (cluster.nodes[leaving].base_url.clone(), cluster.nodes[staying].base_url.clone());
    let admin = Client::new(client::token("ops", Role::Admin));
    client::register_products(&admin, &staying_url).await;
    let token = client::token("alice", Role::Customer);
    let alice = Client::new(token.clone());
    let cart = alice.create_cart(&staying_url).await;

    let mut ws = subscribe(&cluster.nodes[leaving].ws_url, &token, &cart, 0).await;
    let mut seen = Vec::new();

    // A writer on the other node, about 50 changes/s, until told to stop.
    let (stop, stopping) = watch::channel(false);
    let writer = {
        let (alice, cart, url) = (alice.clone(), cart.clone(), staying_url.clone());
        tokio::spawn(async move {
            let mut last = 1;
            let mut i = 0;
            while !*stopping.borrow() {
                i += 1;
                let input = json!({"input": {"cartId": cart, "sku": client::SKUS[i % 3], "quantity": 1}});
                let data = alice.must(&url, client::ADD_ITEM, input).await;
                last = data["addItemToCart"]["cart"]["version"].as_i64().expect("a version");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            last
        })
    };
    while seen.len() < 20 {
        match next(&mut ws).await {
            Next::Message(m) => seen.extend(version(&m)),
            Next::Closed(code) => panic!("closed early: {code:?}"),
        }
    }

    // Requests in flight on the leaving node: reads of a position the (frozen) worker has
    // not applied yet wait for it.
    cluster.nodes[worker].signal("STOP");
    let written = alice
        .must(
            &staying_url,
            client::ADD_ITEM,
            json!({"input": {"cartId": cart, "sku": "tea", "quantity": 1}}),
        )
        .await;
    let position = written["addItemToCart"]["position"].as_str().expect("a position").to_owned();
    let reads: Vec<_> = (0..5)
        .map(|_| {
            let (alice, url, cart, position) = (alice.clone(), leaving_url.clone(), cart.clone(), position.clone());
            tokio::spawn(async move {
                alice
                    .gql(
                        &url,
                        "query($id: UUID!, $at: Position) { cart(id: $id, minPosition: $at) { version } }",
                        json!({"id": cart, "at": position}),
                    )
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reads.iter().all(|r| !r.is_finished()), "the reads did not wait for the frozen worker");

    let terminated = Instant::now();
    cluster.nodes[leaving].signal("TERM");
    let code = loop {
        match next(&mut ws).await {
            Next::Message(m) => seen.extend(version(&m)),
            Next::Closed(code) => break code,
        }
    };
    println!("SIGTERM: WebSocket closed with {code:?} after {:?}", terminated.elapsed());
    assert_eq!(code, Some(1001), "the close code tells the client to reconnect");
    cluster.nodes[worker].signal("CONT");
    for read in reads {
        let answer = read.await.expect("a read");
        let answer = answer.expect("an in-flight request finishes with its answer");
        assert!(answer["cart"]["version"].as_i64().is_some(), "{answer}");
    }

    // Resume on the other node from the last version seen.
    let last_seen = *seen.last().expect("versions");
    let mut ws = subscribe(&cluster.nodes[staying].ws_url, &token, &cart, last_seen).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let last_written = writer.await.expect("the writer");
    while *seen.last().expect("versions") < last_written {
        match next(&mut ws).await {
            Next::Message(m) => seen.extend(version(&m)),
            Next::Closed(code) => panic!("the other node closed: {code:?}"),
        }
    }
    assert_eq!(
        seen,
        (1..=last_written).collect::<Vec<_>>(),
        "every version once, in order, across the two nodes"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = cluster.nodes[leaving].exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "the node did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

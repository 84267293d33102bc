//! Server memory for idle subscriptions: opens N graphql-transport-ws connections with one
//! `cartChanged` subscription each against a running server, and reads the server's RSS
//! (`/proc/<pid>/status`, so the server must run on this machine) before, while they are
//! open, and after they closed. Run by `scripts/ws-memory.sh`, which starts the server.
//!
//! `cargo run --release -p tests --example ws_memory -- <http-url> <server-pid> <token> [connections] [rounds]`

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn graphql(client: &reqwest::Client, url: &str, token: &str, query: &str, variables: Value) -> Result<Value, Error> {
    let response: Value = client
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await?
        .json()
        .await?;
    if response.get("errors").is_some() {
        return Err(format!("{response}").into());
    }
    Ok(response["data"].clone())
}

/// One connection with one subscription; counts `next` messages until told to close.
async fn subscriber(
    ws_url: String,
    token: String,
    cart: String,
    subscribed: tokio::sync::mpsc::Sender<()>,
    mut close: tokio::sync::watch::Receiver<bool>,
    received: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<(), Error> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    ws.send(Message::Text(
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("connection_ack") => break,
            Some(Ok(_)) => {}
            other => return Err(format!("no ack: {other:?}").into()),
        }
    }
    let query = "subscription($c: UUID!) { cartChanged(cartId: $c, afterVersion: 1) { cart { version } } }";
    ws.send(Message::Text(
        json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"c": cart}}})
            .to_string()
            .into(),
    ))
    .await?;
    let _ = subscribed.send(()).await;
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(t))) if t.contains("\"next\"") => { let _ = received.send(cart.clone()); }
                Some(Ok(Message::Text(t))) if t.contains("\"error\"") => return Err(format!("subscription error: {t}").into()),
                Some(Ok(_)) => {}
                _ => return Err("the server closed the connection".into()),
            },
            _ = close.changed() => break,
        }
    }
    ws.send(Message::Text(json!({"id": "1", "type": "complete"}).to_string().into())).await?;
    ws.close(None).await?;
    // Read until the server's close reply, so both sides end cleanly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ws.next().await.is_some() {} }).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: ws_memory <http-url> <server-pid> <token> [connections=1000] [rounds=2]");
        std::process::exit(2);
    }
    let (url, pid, token) = (args[1].clone(), args[2].parse::<u32>()?, args[3].clone());
    let connections: usize = args.get(4).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.get(5).map(|a| a.parse()).transpose()?.unwrap_or(2);
    let ws_url = format!("{}/graphql/ws", url.replacen("http", "ws", 1));
    let client = reqwest::Client::new();

    let mut carts = Vec::with_capacity(connections);
    for chunk in 0..connections.div_ceil(32) {
        let batch =
            (0..32.min(connections - chunk * 32)).map(|_| graphql(&client, &url, &token, "mutation { createCart { cart { id } } }", json!({})));
        for data in futures::future::join_all(batch).await {
            carts.push(data?["createCart"]["cart"]["id"].as_str().ok_or("no cart id")?.to_owned());
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);
    println!("server RSS idle, {connections} carts created: {}", mib(idle));

    for round in 1..=rounds {
        let (close_tx, close_rx) = tokio::sync::watch::channel(false);
        let (subscribed_tx, mut subscribed_rx) = tokio::sync::mpsc::channel(connections);
        let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::with_capacity(connections);
        for cart in &carts {
            let permit = gate.clone().acquire_owned().await?;
            let task = tokio::spawn(subscriber(
                ws_url.clone(),
                token.clone(),
                cart.clone(),
                subscribed_tx.clone(),
                close_rx.clone(),
                received_tx.clone(),
            ));
            // Hold the permit until this connection subscribed (or failed).
            match subscribed_rx.recv().await {
                Some(()) => drop(permit),
                None => return Err("a subscriber failed".into()),
            }
            tasks.push(task);
        }
        // The subscriptions are registered once their catch-up ran: give them a moment.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let open = rss_kib(pid);
        // One change on the first cart proves the subscriptions are live.
        graphql(
            &client,
            &url,
            &token,
            "mutation($c: UUID!) { addItemToCart(input: {cartId: $c, sku: \"apple\", quantity: 1}) { cart { version } } }",
            json!({"c": carts[0]}),
        )
        .await?;
        let got = tokio::time::timeout(Duration::from_secs(10), received_rx.recv()).await?;
        assert_eq!(got.as_deref(), Some(carts[0].as_str()), "the first cart's subscriber hears its change");
        println!(
            "round {round}: {connections} subscriptions open: {} (+{} per subscription over idle)",
            mib(open),
            format_args!("{:.1} KiB", open.saturating_sub(idle) as f64 / connections as f64)
        );
        close_tx.send(true)?;
        for task in tasks {
            task.await??;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = rss_kib(pid);
        println!(
            "round {round}: all closed: {} ({:+.0}% of idle)",
            mib(after),
            (after as f64 / idle as f64 - 1.0) * 100.0
        );
    }
    Ok(())
}

//! The workloads. Closed loops over HTTP for both servers (each simulated user sends its
//! next request when the previous one answered), and, for cartsource only, live
//! subscribers with an open-loop writer. Every loop is bounded by time, every request by
//! [`http::REQUEST_TIMEOUT`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use crate::driver::http::{self, Gql};
use crate::driver::ws;
use crate::driver::Server;
use crate::token;

/// Products every run registers; adds cycle through them so no line reaches 999.
pub const SKUS: usize = 50;
/// A client on its own cart moves to a new cart after this many adds (at most 20 a line).
const ADDS_PER_CART: u64 = 1000;
/// The shared cart is replaced after this many adds by all its clients together (about 400
/// a line over 50 products, well under the 999 a line allows even with adds in flight).
const ADDS_PER_SHARED_CART: u64 = 20_000;
/// Subscribers connect in batches of this many.
const CONNECT_BATCH: usize = 100;

fn sku(n: u64) -> String {
    format!("BENCH-{:02}", n % SKUS as u64)
}

fn token_for(sub: &str) -> anyhow::Result<String> {
    token::issue(sub, "customer", Duration::from_secs(24 * 3600), token::BENCH_SECRET.as_bytes())
}

/// Registers [`SKUS`] products with an admin token.
pub async fn seed(server: &Server) -> anyhow::Result<()> {
    let admin = token::issue("bench-admin", "admin", Duration::from_secs(3600), token::BENCH_SECRET.as_bytes())?;
    let gql = Gql::new(&server.base_url, &admin)?;
    for n in 0..SKUS as u64 {
        let input = json!({ "sku": sku(n), "name": format!("Bench item {n}"), "price": "1.00", "initialStock": 1000 });
        gql.call(http::REGISTER_PRODUCT, json!({ "input": input }))
            .await
            .map_err(|code| anyhow::anyhow!("registerProduct on {}: {code}", server.kind.name()))?;
    }
    Ok(())
}

/// What the closed-loop workloads do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Http {
    /// addItemToCart, each client on its own cart.
    OwnCarts(usize),
    /// addItemToCart, all clients on one cart, without expectedVersion.
    SharedCart(usize),
    /// cart(id), each client its own cart of a few lines.
    Reads(usize),
}

impl Http {
    pub fn clients(self) -> usize {
        match self {
            Http::OwnCarts(n) | Http::SharedCart(n) | Http::Reads(n) => n,
        }
    }

    /// The name `--only` selects it by.
    pub fn short_name(self) -> String {
        match self {
            Http::OwnCarts(n) => format!("own{n}"),
            Http::SharedCart(_) => "shared".to_owned(),
            Http::Reads(_) => "reads".to_owned(),
        }
    }
}

/// One run of a closed-loop workload against one server.
pub struct HttpRun {
    pub ok: u64,
    pub seconds: f64,
    /// Latency of every measured request (successful or not), microseconds.
    pub latencies_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
}

/// Runs `workload` for `warmup` (not measured) plus `measure`.
pub async fn run_http(server: &Server, workload: Http, warmup: Duration, measure: Duration) -> anyhow::Result<HttpRun> {
    let n = workload.clients();
    let shared_owner = format!("bench-shared-{}", Uuid::new_v4().simple());
    let mut clients = Vec::with_capacity(n);
    let mut shared_cart = None;
    for i in 0..n {
        let sub = match workload {
            Http::SharedCart(_) => shared_owner.clone(),
            _ => format!("bench-user-{i}-{}", Uuid::new_v4().simple()),
        };
        let gql = Gql::new(&server.base_url, &token_for(&sub)?)?;
        let cart = match (workload, shared_cart) {
            (Http::SharedCart(_), Some(cart)) => cart,
            _ => gql.create_cart().await.map_err(|c| anyhow::anyhow!("createCart: {c}"))?,
        };
        if let Http::SharedCart(_) = workload {
            shared_cart = Some(cart);
        }
        if let Http::Reads(_) = workload {
            for k in 0..5 {
                gql.add_item(cart, &sku(k)).await.map_err(|c| anyhow::anyhow!("addItemToCart: {c}"))?;
            }
        }
        clients.push((gql, cart));
    }
    if let Http::Reads(_) = workload {
        // The read model may lag behind the commands that filled the carts.
        for (gql, cart) in &clients {
            wait_readable(gql, *cart).await?;
        }
    }
    let rss_before_kib = server.rss_kib();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = Vec::with_capacity(n);
    let shared = Arc::new(SharedCart {
        cart: std::sync::Mutex::new(shared_cart.unwrap_or_default()),
        adds: AtomicU64::new(0),
    });
    for (gql, cart) in clients {
        tasks.push(tokio::spawn(client_loop(gql, cart, workload, shared.clone(), measure_from, end)));
    }
    let mut run = HttpRun {
        ok: 0,
        seconds: measure.as_secs_f64(),
        latencies_us: Vec::new(),
        errors: BTreeMap::new(),
        rss_before_kib,
        rss_after_kib: None,
    };
    for task in tasks {
        let (ok, latencies, errors) = task.await?;
        run.ok += ok;
        run.latencies_us.extend(latencies);
        for (code, count) in errors {
            *run.errors.entry(code).or_default() += count;
        }
    }
    run.rss_after_kib = server.rss_kib();
    Ok(run)
}

async fn wait_readable(gql: &Gql, cart: Uuid) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match gql.cart(cart).await {
            Ok(c) if c["lines"].as_array().is_some_and(|l| l.len() == 5) => return Ok(()),
            _ if Instant::now() > deadline => bail!("cart {cart} not readable with its 5 lines within 30 s"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

type ClientResult = (u64, Vec<u64>, BTreeMap<String, u64>);

/// The cart all clients of the shared-cart workload add to, and how many adds it has had.
struct SharedCart {
    cart: std::sync::Mutex<Uuid>,
    adds: AtomicU64,
}

async fn client_loop(gql: Gql, mut cart: Uuid, workload: Http, shared: Arc<SharedCart>, measure_from: Instant, end: Instant) -> ClientResult {
    let (mut ok, mut latencies, mut errors) = (0, Vec::new(), BTreeMap::new());
    let (mut sent, mut on_this_cart): (u64, u64) = (0, 0);
    while Instant::now() < end {
        if matches!(workload, Http::OwnCarts(_)) && on_this_cart == ADDS_PER_CART {
            // Not measured: a fresh cart keeps lines under 999 and carts a realistic size.
            on_this_cart = 0;
            match gql.create_cart().await {
                Ok(new) => cart = new,
                Err(code) => *errors.entry(format!("createCart {code}")).or_default() += 1,
            }
        }
        if let Http::SharedCart(_) = workload {
            // Not measured either: the client whose add fills the shared cart replaces it.
            if (shared.adds.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(ADDS_PER_SHARED_CART) {
                match gql.create_cart().await {
                    Ok(new) => *shared.cart.lock().unwrap_or_else(|p| p.into_inner()) = new,
                    Err(code) => *errors.entry(format!("createCart {code}")).or_default() += 1,
                }
            }
            cart = *shared.cart.lock().unwrap_or_else(|p| p.into_inner());
        }
        on_this_cart += 1;
        let started = Instant::now();
        let result = match workload {
            Http::OwnCarts(_) | Http::SharedCart(_) => gql.add_item(cart, &sku(sent)).await.map(|_| ()),
            Http::Reads(_) => gql.cart(cart).await.map(|_| ()),
        };
        sent += 1;
        if started < measure_from || Instant::now() > end {
            continue;
        }
        latencies.push(started.elapsed().as_micros() as u64);
        match result {
            Ok(()) => ok += 1,
            Err(code) => *errors.entry(code).or_default() += 1,
        }
    }
    (ok, latencies, errors)
}

/// Live subscribers: `subscribers` sockets spread over `carts` carts (one cart: all on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Live {
    pub carts: usize,
    pub subscribers: usize,
    /// The writer on one node, the subscribers on another node on the same database.
    pub across_nodes: bool,
}

/// One run of a live workload.
#[derive(Default)]
pub struct LiveRun {
    pub sent: u64,
    pub acknowledged: u64,
    pub errors: BTreeMap<String, u64>,
    pub deliveries: u64,
    pub missed: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Subscribers that ended before the run did, and the first reason.
    pub ended_early: (u64, Option<String>),
    /// Receive time minus the event's `occurredAt`, microseconds.
    pub from_recorded_us: Vec<u64>,
    /// Receive time minus the writer's receipt of the mutation's response (0 if earlier).
    pub from_ack_us: Vec<u64>,
    pub rss_idle_kib: Option<u64>,
    pub rss_connected_kib: Option<u64>,
    pub rss_after_run_kib: Option<u64>,
    pub rss_closed_kib: Option<u64>,
}

type AckTimes = Arc<Mutex<BTreeMap<(usize, i64), OffsetDateTime>>>;

/// Subscribers first, then a writer at `rate` addItemToCart/s (open loop: it does not
/// wait for answers) round-robin over the carts for `measure`; then a bounded drain. The
/// writer sends to `written`, the subscribers listen on `subscribed` (the same server, or
/// another node on its database); the RSS figures are `subscribed`'s.
pub async fn run_live(written: &Server, subscribed: &Server, live: Live, rate: u32, measure: Duration) -> anyhow::Result<LiveRun> {
    let owner = format!("bench-live-{}", Uuid::new_v4().simple());
    let token = token_for(&owner)?;
    let writer = Gql::new(&written.base_url, &token)?;
    let mut carts = Vec::with_capacity(live.carts);
    for _ in 0..live.carts {
        carts.push(writer.create_cart().await.map_err(|c| anyhow::anyhow!("createCart: {c}"))?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle_kib = subscribed.rss_kib();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subscribers = Vec::with_capacity(live.subscribers);
    for batch in (0..live.subscribers).collect::<Vec<_>>().chunks(CONNECT_BATCH) {
        for &i in batch {
            let cart = i % carts.len();
            let latest = Arc::new(AtomicI64::new(0));
            let task = ws::subscribe_cart(subscribed.ws_url.clone(), token.clone(), carts[cart], latest.clone(), stop_rx.clone());
            subscribers.push((cart, latest, tokio::spawn(task)));
        }
        // Connect in batches, each live before the next, as clients arriving over time would.
        if !wait_until(&subscribers, |_, v| v >= 1, Duration::from_secs(60)).await {
            let live_now = subscribers.iter().filter(|(_, l, _)| l.load(Ordering::SeqCst) >= 1).count();
            bail!("only {live_now} of {} subscribers live within 60 s", subscribers.len());
        }
    }
    let rss_connected_kib = subscribed.rss_kib();

    let acks: AckTimes = Arc::default();
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let end = Instant::now() + measure;
    let mut writes = Vec::new();
    let mut sent: u64 = 0;
    while Instant::now() < end {
        ticker.tick().await;
        let (writer, acks, errors, acknowledged) = (writer.clone(), acks.clone(), errors.clone(), acknowledged.clone());
        let index = (sent as usize) % carts.len();
        let (cart, sku) = (carts[index], sku(sent / carts.len() as u64));
        writes.push(tokio::spawn(async move {
            match writer.add_item(cart, &sku).await {
                Ok(version) => {
                    let now = OffsetDateTime::now_utc();
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    acks.lock().await.insert((index, version), now);
                }
                Err(code) => *errors.lock().await.entry(code).or_default() += 1,
            }
        }));
        sent += 1;
    }
    for write in writes {
        write.await?;
    }
    let acks = Arc::try_unwrap(acks).map_err(|_| anyhow::anyhow!("writer still running"))?.into_inner();
    let errors = Arc::try_unwrap(errors).map_err(|_| anyhow::anyhow!("writer still running"))?.into_inner();

    // The last version of each cart: the highest acknowledged (1 = created).
    let mut last = vec![1i64; carts.len()];
    for (cart, version) in acks.keys() {
        last[*cart] = last[*cart].max(*version);
    }
    // Drain: up to 10 s for every subscriber to receive its cart's last version.
    wait_until(&subscribers, |cart, v| v >= last[cart], Duration::from_secs(10)).await;
    let rss_after_run_kib = subscribed.rss_kib();
    let _ = stop_tx.send(true);
    let mut logs = Vec::with_capacity(subscribers.len());
    for (cart, _, task) in subscribers {
        logs.push((cart, task.await.context("subscriber task")?));
    }
    let mut run = LiveRun {
        sent,
        acknowledged: acknowledged.load(Ordering::SeqCst),
        errors,
        rss_idle_kib,
        rss_connected_kib,
        rss_after_run_kib,
        ..LiveRun::default()
    };
    for (cart, log) in &logs {
        check_deliveries(&mut run, *cart, log, &last, &acks);
    }
    drop(logs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.rss_closed_kib = subscribed.rss_kib();
    Ok(run)
}

type Subscriber = (usize, Arc<AtomicI64>, tokio::task::JoinHandle<ws::SubscriberLog>);

/// Waits (bounded) until `done(cart, latest version)` holds for every subscriber.
async fn wait_until(subscribers: &[Subscriber], done: impl Fn(usize, i64) -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if subscribers.iter().all(|(cart, latest, _)| done(*cart, latest.load(Ordering::SeqCst))) {
            return true;
        }
        if Instant::now() > deadline || subscribers.iter().all(|(_, _, task)| task.is_finished()) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each subscriber must see versions 1..=last of its cart, each once, in order.
fn check_deliveries(run: &mut LiveRun, cart: usize, log: &ws::SubscriberLog, last: &[i64], acks: &BTreeMap<(usize, i64), OffsetDateTime>) {
    if let Some(why) = &log.ended {
        run.ended_early.0 += 1;
        run.ended_early.1.get_or_insert_with(|| why.clone());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut previous = 0;
    for d in &log.deliveries {
        run.deliveries += 1;
        if !seen.insert(d.version) {
            run.duplicated += 1;
        }
        if d.version <= previous {
            run.out_of_order += 1;
        }
        previous = previous.max(d.version);
        if let Some(acked) = acks.get(&(cart, d.version)) {
            let since_ack = (d.received_at - *acked).whole_microseconds().max(0);
            run.from_ack_us.push(since_ack as u64);
            if let Some(recorded) = d.occurred_at {
                run.from_recorded_us.push((d.received_at - recorded).whole_microseconds().max(0) as u64);
            }
        }
    }
    let expected = last[cart].max(seen.last().copied().unwrap_or(0));
    run.missed += (1..=expected).filter(|v| !seen.contains(v)).count() as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(versions: &[i64]) -> ws::SubscriberLog {
        let now = OffsetDateTime::now_utc();
        let deliveries = versions
            .iter()
            .map(|&version| ws::Delivery {
                version,
                occurred_at: Some(now),
                received_at: now,
            })
            .collect();
        ws::SubscriberLog { deliveries, ended: None }
    }

    fn checked(versions: &[i64], last: i64) -> LiveRun {
        let mut run = LiveRun::default();
        check_deliveries(&mut run, 0, &log(versions), &[last], &BTreeMap::new());
        run
    }

    #[test]
    fn every_version_once_in_order_is_clean() {
        let run = checked(&[1, 2, 3, 4], 4);
        assert_eq!((run.deliveries, run.missed, run.duplicated, run.out_of_order), (4, 0, 0, 0));
    }

    #[test]
    fn gaps_repeats_and_reordering_are_counted() {
        let run = checked(&[1, 3, 3, 2], 5);
        // 4 and 5 never came; 3 came twice; 3 after 3 and 2 after 3 are out of order.
        assert_eq!((run.missed, run.duplicated, run.out_of_order), (2, 1, 2));
    }
}

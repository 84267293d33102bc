//! The leading worker fails while clients write at about 20 commands/s through two API
//! nodes: frozen (SIGSTOP, later SIGCONT) or killed (SIGKILL). The standby leads every
//! consumer within 5 s (measured and printed), the read models move again, no checkpoint
//! ever moves back, the read models equal a rebuild afterwards, every reactor effect
//! happened exactly once, the NATS stream holds each event once, and no command failed (API nodes do not depend on the workers).
//! A frozen leader that wakes up writes nothing and stands by.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use api::auth::Role;
use tokio::sync::watch;

use crate::bus::Bus;
use crate::checks;
use crate::client::{self, Client};
use crate::harness::Cluster;

/// Five read models, two reactors and the NATS publisher.
const CONSUMERS: usize = 8;

/// How the leader fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// SIGSTOP for this long, then SIGCONT.
    Frozen(Duration),
    Killed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_leader_is_replaced_within_5_s_and_writes_nothing_when_it_wakes_up() {
    leader_fails(Failure::Frozen(Duration::from_secs(10))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_is_replaced_within_5_s_and_every_effect_happens_once() {
    leader_fails(Failure::Killed).await;
}

async fn leader_fails(failure: Failure) {
    let bus = Bus::new();
    let mut cluster = Cluster::start(2, 2, bus.args()).await;
    let api_urls: Vec<String> = cluster.api_nodes().iter().map(|i| cluster.nodes[*i].base_url.clone()).collect();
    let admin = Client::new(client::token("ops", Role::Admin));
    client::register_products(&admin, &api_urls[0]).await;

    let (stop_watch, watching) = watch::channel(false);
    let monitor = checks::watch_checkpoints(cluster.db.clone(), watching);
    let (stop_writing, writing) = watch::channel(false);
    let writer = tokio::spawn(client::write_steadily(
        Client::new(client::token("shopper", Role::Customer)),
        api_urls.clone(),
        20,
        writing,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The leader, as an admin finds it through the API.
    let statuses = client::statuses(&admin, &api_urls[1]).await.expect("statuses");
    let leaders: Vec<&str> = statuses.iter().filter_map(|s| s["leader"].as_str()).collect();
    assert_eq!(leaders.len(), CONSUMERS, "every consumer has a leader: {statuses:?}");
    let leader = cluster.node_named(leaders[0]).expect("the leader is one of ours");
    assert!(leaders.iter().all(|l| *l == leaders[0]), "one worker leads all: {leaders:?}");
    let standby = *cluster.workers().iter().find(|w| **w != leader).expect("a standby");
    let standby_name = cluster.worker_name(standby);
    let before: HashMap<String, i64> = cluster.checkpoints().await.into_iter().map(|r| (r.name, r.position)).collect();

    let failed_at = Instant::now();
    match failure {
        Failure::Frozen(_) => cluster.nodes[leader].signal("STOP"),
        Failure::Killed => cluster.nodes[leader].signal("KILL"),
    }
    // Every consumer led by the standby, as the API reports it.
    let took = loop {
        let statuses = client::statuses(&admin, &api_urls[0]).await.unwrap_or_default();
        if statuses.len() == CONSUMERS && statuses.iter().all(|s| s["leader"].as_str() == Some(standby_name.as_str())) {
            break failed_at.elapsed();
        }
        assert!(failed_at.elapsed() < Duration::from_secs(15), "no takeover after 15 s: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Every checkpoint moved on since the failure.
    let moving = loop {
        let rows = cluster.checkpoints().await;
        if rows.iter().all(|r| r.position > before[&r.name]) {
            break failed_at.elapsed();
        }
        assert!(failed_at.elapsed() < Duration::from_secs(30), "the read side stands still: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("{failure:?}: the standby led every consumer after {took:?}; every checkpoint moved again after {moving:?}");
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");

    if let Failure::Frozen(frozen) = failure {
        tokio::time::sleep(frozen.saturating_sub(failed_at.elapsed())).await;
        let epochs: Vec<i64> = cluster.checkpoints().await.iter().map(|r| r.epoch).collect();
        cluster.nodes[leader].signal("CONT");
        // Several heartbeats of the woken process, while the clients keep writing.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(cluster.nodes[leader].exited().is_none(), "the woken process died");
        let rows = cluster.checkpoints().await;
        assert!(
            rows.iter().all(|r| r.leader.as_deref() == Some(standby_name.as_str()) && r.live),
            "the woken process took a lease back: {rows:?}"
        );
        assert_eq!(
            rows.iter().map(|r| r.epoch).collect::<Vec<_>>(),
            epochs,
            "a token moved after the wake-up"
        );
        // Every worker of the woken process says why it stopped: its lease lost, by its own
        // clock or the keeper's renewal ("lease lost"), or its fenced checkpoint write matched
        // no row ("another process leads now"). (A worker that noticed by its own clock before
        // the keeper did used to stop silently.)
        let woke = Instant::now();
        loop {
            let stopped = stood_down(&cluster.nodes[leader].log());
            if stopped.len() == CONSUMERS {
                break;
            }
            let state = cluster.nodes[leader].state();
            assert!(
                woke.elapsed() < Duration::from_secs(20),
                "only {stopped:?} of the woken process said they stopped leading (process state: {state})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let _ = stop_writing.send(true);
    let written = writer.await.expect("the writer");
    println!(
        "{failure:?}: {} commands in {:.1?} ({:.1}/s), {} orders ({} cancelled); {} of {} read-your-write queries failed",
        written.commands,
        written.elapsed,
        written.commands as f64 / written.elapsed.as_secs_f64(),
        written.orders,
        written.cancelled,
        written.stale_reads,
        written.reads
    );
    assert!(written.failed.is_empty(), "commands failed: {:?}", written.failed);
    assert!(written.orders >= 10, "the clients placed too few orders: {written:?}");
    client::wait_until_caught_up(&admin, &api_urls[0], Duration::from_secs(60)).await;
    let _ = stop_watch.send(true);
    let backwards = monitor.await.expect("the monitor");
    assert!(backwards.is_empty(), "checkpoints moved back: {backwards:?}");

    let (orders, cancelled) = checks::effects_happened_once(&cluster.db).await;
    assert_eq!(orders as u64, written.orders);
    assert_eq!(cancelled as u64, written.cancelled * 2, "two lines per cancelled order");
    let published = bus.holds_each_event_once(&cluster.db).await;
    println!("{failure:?}: the NATS stream holds each of {published} events once");
    checks::read_models_equal_a_rebuild(&cluster, &admin, &api_urls[1]).await;
}

/// The workers that logged that they stopped leading.
fn stood_down(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            let message = line["message"].as_str().unwrap_or_default();
            message.starts_with("lease lost") || message.starts_with("another process leads now")
        })
        .filter_map(|line| line["worker"].as_str().map(str::to_owned))
        .collect()
}

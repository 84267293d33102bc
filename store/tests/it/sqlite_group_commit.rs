//! Group commit on SQLite: one-stream appends that arrive while another is written share
//! one transaction. Each caller keeps its own expectation, answer and error; grouping is
//! observed in `recorded_at`, taken once per transaction (a lone append's differs from the
//! next one's: each waits for a sync of the WAL).

use std::collections::{HashMap, HashSet};

use serde_json::json;
use store::{AppendRequest, EventStore, ExpectedVersion, Position, SqliteStore, StoreError};

use crate::group_commit::{all_at_once, event, versions};

async fn store() -> SqliteStore {
    SqliteStore::connect(&store::testing::sqlite()).await.expect("open store")
}

/// Events per writing transaction, from the stored `recorded_at`.
async fn events_per_transaction(store: &SqliteStore) -> Vec<usize> {
    let all = store.read_all(Position::START, 100_000, None).await.expect("read_all");
    let mut per_commit: HashMap<_, usize> = HashMap::new();
    for event in &all {
        *per_commit.entry(event.recorded_at).or_default() += 1;
    }
    per_commit.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_that_arrive_together_share_a_transaction_and_each_gets_its_own_outcome() {
    let store = store().await;
    let appends = (0..200)
        .map(|i| AppendRequest::single(format!("cart-g{i}"), ExpectedVersion::NoStream, vec![event(i)]))
        .collect();
    let results = all_at_once(&store, appends).await;

    for (i, result) in results.iter().enumerate() {
        let outcome = result.as_ref().unwrap_or_else(|e| panic!("append {i}: {e:?}"));
        let stored = store.read_stream(&format!("cart-g{i}"), 1, 10).await.expect("read");
        assert_eq!(stored.len(), 1, "cart-g{i}");
        assert_eq!(stored[0].data, json!({ "n": i }));
        assert_eq!(outcome.positions, vec![stored[0].position], "the acknowledged position is the stored one");
        assert_eq!((outcome.streams[0].first_version, outcome.streams[0].last_version), (1, 1));
    }
    let sizes = events_per_transaction(&store).await;
    assert_eq!(sizes.iter().sum::<usize>(), 200);
    assert!(sizes.len() < 100, "200 appends at once in {} transactions: {sizes:?}", sizes.len());
}

/// Callers answered by one group come back together with their next appends and are
/// grouped together again. On one thread, so that which task runs when is fixed.
#[tokio::test(flavor = "current_thread")]
async fn callers_answered_together_are_grouped_together_again() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 20;
    let store = store().await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let request = AppendRequest::single(format!("cart-w{writer}-{round}"), ExpectedVersion::NoStream, vec![event(round)]);
                    store.append(request).await.expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let sizes = events_per_transaction(&store).await;
    assert_eq!(sizes.iter().sum::<usize>(), WRITERS * ROUNDS);
    assert!(
        sizes.len() <= ROUNDS + 4,
        "{} transactions for {ROUNDS} rounds of {WRITERS} appends: {sizes:?}",
        sizes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_on_one_stream_in_one_group_let_exactly_one_win() {
    let store = store().await;
    store
        .append(AppendRequest::single("cart-hot", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .expect("seed");
    let mut appends: Vec<AppendRequest> = (0..40)
        .map(|i| AppendRequest::single("cart-hot", ExpectedVersion::Exact(1), vec![event(i)]))
        .collect();
    appends.extend((0..40).map(|i| AppendRequest::single(format!("cart-own{i}"), ExpectedVersion::NoStream, vec![event(i)])));
    let results = all_at_once(&store, appends).await;

    let (hot, own) = results.split_at(40);
    assert_eq!(hot.iter().filter(|r| r.is_ok()).count(), 1, "exactly one of the racing appends wins");
    for result in hot.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                result,
                Err(StoreError::Conflict {
                    expected: ExpectedVersion::Exact(1),
                    actual: 2,
                    ..
                })
            ),
            "a loser gets a conflict at version 2, not {result:?}"
        );
    }
    assert!(own.iter().all(Result::is_ok), "the other streams are unaffected: {own:?}");
    assert_eq!(versions(&store, "cart-hot").await, vec![1, 2], "no gap, no duplicate");
    assert!(events_per_transaction(&store).await.iter().any(|n| *n > 1), "the race was not grouped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_event_id_fails_only_its_own_append() {
    let store = store().await;
    store
        .append(AppendRequest::single("cart-a", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .expect("seed");
    let reused = store.read_stream("cart-a", 1, 1).await.expect("read")[0].event_id;
    let mut appends: Vec<AppendRequest> = (1..60)
        .map(|i| AppendRequest::single(format!("cart-b{i}"), ExpectedVersion::NoStream, vec![event(i)]))
        .collect();
    let mut bad = event(0);
    bad.event_id = reused;
    appends.insert(30, AppendRequest::single("cart-bad", ExpectedVersion::NoStream, vec![bad]));
    let results = all_at_once(&store, appends).await;

    for (i, result) in results.iter().enumerate() {
        if i == 30 {
            assert!(matches!(result, Err(StoreError::InvalidRequest(_))), "the reused id: {result:?}");
        } else {
            assert!(result.is_ok(), "append {i}: {result:?}");
        }
    }
    let streams: HashSet<String> = store
        .read_all(Position::START, 1_000, None)
        .await
        .expect("read_all")
        .into_iter()
        .map(|e| e.stream_id)
        .collect();
    assert_eq!(streams.len(), 60, "cart-a and the 59 good appends, each once");
}

//! Group commit on Postgres: single-event appends written together in one statement and
//! one transaction. Each caller keeps its own expectation, its own answer, and its own
//! error; grouping is observed in the positions (one transaction id, `position >> 20`,
//! holding the events of several callers).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use store::postgres::PgStoreOptions;
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, PgStore, Position, StoreError};
use tokio::sync::Barrier;

fn event(n: usize) -> NewEvent {
    NewEvent::new("Tested", 1, json!({ "n": n }), Metadata::default())
}

/// A store that writes at most one group at a time, so appends that arrive together queue
/// behind the first and are written as a group.
async fn one_writer_store() -> PgStore {
    let db = store::testing::postgres().await;
    let options = PgStoreOptions {
        max_connections: 8,
        group_commit_writers: 1,
        ..Default::default()
    };
    PgStore::connect_with(&db.url, options).await.expect("open store")
}

/// Runs `appends` at once (released together by a barrier); their results in order.
async fn all_at_once(store: &PgStore, appends: Vec<AppendRequest>) -> Vec<Result<AppendOutcome, StoreError>> {
    let barrier = Arc::new(Barrier::new(appends.len()));
    let tasks: Vec<_> = appends
        .into_iter()
        .map(|request| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(request).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("append task"));
    }
    results
}

/// Events per writing transaction, from the stored positions.
async fn events_per_transaction(store: &PgStore) -> Vec<usize> {
    let all = store.read_all(Position::START, 100_000, None).await.expect("read_all");
    let mut per_xid: HashMap<u64, usize> = HashMap::new();
    for event in &all {
        *per_xid.entry(event.position.0 >> 20).or_default() += 1;
    }
    per_xid.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_that_arrive_together_share_a_transaction_and_each_gets_its_own_outcome() {
    let store = one_writer_store().await;
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
    assert!(sizes.iter().any(|n| *n > 1), "no two appends shared a transaction: {sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_on_one_stream_in_one_group_let_exactly_one_win() {
    let store = one_writer_store().await;
    store
        .append(AppendRequest::single("cart-hot", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .expect("seed");
    // Forty callers that all read version 1, plus others on streams of their own so the
    // group has more than the race in it.
    let mut appends: Vec<AppendRequest> = (0..40)
        .map(|i| AppendRequest::single("cart-hot", ExpectedVersion::Exact(1), vec![event(i)]))
        .collect();
    appends.extend((0..40).map(|i| AppendRequest::single(format!("cart-own{i}"), ExpectedVersion::NoStream, vec![event(i)])));
    // An expectation of a version that does not exist yet.
    appends.push(AppendRequest::single("cart-hot", ExpectedVersion::Exact(7), vec![event(99)]));
    let results = all_at_once(&store, appends).await;

    let (hot, rest) = results.split_at(40);
    let won = hot.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "exactly one of the racing appends wins");
    for result in hot.iter().filter(|r| r.is_err()) {
        match result {
            Err(StoreError::Conflict { stream, expected, actual }) => {
                assert_eq!((stream.as_str(), *expected, *actual), ("cart-hot", ExpectedVersion::Exact(1), 2));
            }
            other => panic!("a loser gets a conflict, not {other:?}"),
        }
    }
    let (own, missing) = rest.split_at(40);
    assert!(own.iter().all(Result::is_ok), "the other streams are unaffected: {own:?}");
    // Version 1 or 2, depending on whether the winner had committed when it was refused.
    assert!(
        matches!(
            &missing[0],
            Err(StoreError::Conflict {
                expected: ExpectedVersion::Exact(7),
                actual: 1 | 2,
                ..
            })
        ),
        "Exact(7) on a stream at version 1 or 2: {:?}",
        missing[0]
    );
    let versions: Vec<u64> = store
        .read_stream("cart-hot", 1, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2], "no gap, no duplicate");
    assert!(events_per_transaction(&store).await.iter().any(|n| *n > 1), "the race was not grouped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_event_id_fails_only_its_own_append() {
    let store = one_writer_store().await;
    let first = store
        .append(AppendRequest::single("cart-a", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .expect("seed");
    let reused = store.read_stream("cart-a", 1, 1).await.expect("read")[0].event_id;
    assert_eq!(first.positions.len(), 1);

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
    assert!(store.read_stream("cart-bad", 1, 1).await.expect("read").is_empty());
    let streams: HashSet<String> = store
        .read_all(Position::START, 1_000, None)
        .await
        .expect("read_all")
        .into_iter()
        .map(|e| e.stream_id)
        .collect();
    assert_eq!(streams.len(), 60, "cart-a and the 59 good appends, each once");
}

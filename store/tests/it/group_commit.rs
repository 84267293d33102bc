//! Group commit on Postgres: one-stream appends written together in one statement and one
//! transaction. Each caller keeps its own expectation, its own answer, and its own
//! error; grouping is observed in the positions (one transaction id, `position >> 20`,
//! holding the events of several callers).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use store::postgres::PgStoreOptions;
use store::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, PgStore, Position, RecordedEvent, StoreError};
use tokio::sync::Barrier;

pub(crate) fn event(n: usize) -> NewEvent {
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

/// Version 1 of `stream`, written alone before a test's race.
async fn seed(store: &PgStore, stream: &str) -> AppendOutcome {
    store
        .append(AppendRequest::single(stream, ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .expect("seed")
}

/// Runs `appends` at once (released together by a barrier); their results in order.
pub(crate) async fn all_at_once<S: EventStore + Clone + 'static>(store: &S, appends: Vec<AppendRequest>) -> Vec<Result<AppendOutcome, StoreError>> {
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

/// The versions stored for `stream`, in order.
pub(crate) async fn versions(store: &impl EventStore, stream: &str) -> Vec<u64> {
    store
        .read_stream(stream, 1, 1_000)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect()
}

/// 200 single-event appends to streams of their own, at once: each is stored once and
/// acknowledged with its own position and version.
pub(crate) async fn each_of_200_at_once_gets_its_own_outcome<S: EventStore + Clone + 'static>(store: &S) {
    let appends = (0..200)
        .map(|i| AppendRequest::single(format!("cart-g{i}"), ExpectedVersion::NoStream, vec![event(i)]))
        .collect();
    let results = all_at_once(store, appends).await;
    for (i, result) in results.iter().enumerate() {
        let outcome = result.as_ref().unwrap_or_else(|e| panic!("append {i}: {e:?}"));
        let stored = store.read_stream(&format!("cart-g{i}"), 1, 10).await.expect("read");
        assert_eq!(stored.len(), 1, "cart-g{i}");
        assert_eq!(stored[0].data, json!({ "n": i }));
        assert_eq!(outcome.positions, vec![stored[0].position], "the acknowledged position is the stored one");
        assert_eq!((outcome.streams[0].first_version, outcome.streams[0].last_version), (1, 1));
    }
}

/// `writers` tasks, each appending one event to a new stream per round, `rounds` times.
pub(crate) async fn write_in_rounds<S: EventStore + Clone + 'static>(store: &S, writers: usize, rounds: usize) {
    let writers: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..rounds {
                    let request = AppendRequest::single(format!("cart-w{writer}-{round}"), ExpectedVersion::NoStream, vec![event(round)]);
                    store.append(request).await.expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
}

/// 59 appends at once with one among them reusing a stored event id: only that one fails
/// (INVALID_REQUEST), and nothing of it is stored.
pub(crate) async fn a_reused_event_id_among_others_fails_alone<S: EventStore + Clone + 'static>(store: &S) {
    let first = store
        .append(AppendRequest::single("cart-a", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .expect("seed");
    assert_eq!(first.positions.len(), 1);
    let reused = store.read_stream("cart-a", 1, 1).await.expect("read")[0].event_id;
    let mut appends: Vec<AppendRequest> = (1..60)
        .map(|i| AppendRequest::single(format!("cart-b{i}"), ExpectedVersion::NoStream, vec![event(i)]))
        .collect();
    let mut bad = event(0);
    bad.event_id = reused;
    appends.insert(30, AppendRequest::single("cart-bad", ExpectedVersion::NoStream, vec![bad]));
    let results = all_at_once(store, appends).await;

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

/// Events per writing transaction, from the stored positions (the transaction id above
/// the ordinal's 20 bits).
async fn events_per_transaction(store: &PgStore) -> Vec<usize> {
    stored_events_per(store, |event| event.position.0 >> 20).await
}

/// How many stored events share each value of `key`.
pub(crate) async fn stored_events_per<K: std::hash::Hash + Eq>(store: &impl EventStore, key: impl Fn(&RecordedEvent) -> K) -> Vec<usize> {
    let all = store.read_all(Position::START, 100_000, None).await.expect("read_all");
    let mut per_key: HashMap<K, usize> = HashMap::new();
    for event in &all {
        *per_key.entry(key(event)).or_default() += 1;
    }
    per_key.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_that_arrive_together_share_a_transaction_and_each_gets_its_own_outcome() {
    let store = one_writer_store().await;
    each_of_200_at_once_gets_its_own_outcome(&store).await;
    let sizes = events_per_transaction(&store).await;
    assert_eq!(sizes.iter().sum::<usize>(), 200);
    assert!(sizes.iter().any(|n| *n > 1), "no two appends shared a transaction: {sizes:?}");
}

/// Callers answered by one group come back together with their next appends, and are
/// grouped together again: the first of them is not written alone with the rest queued
/// behind it (which made two statements of every round, twice the flushes). On one thread,
/// so that which task runs when is fixed.
#[tokio::test(flavor = "current_thread")]
async fn callers_answered_together_are_grouped_together_again() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 20;
    let store = one_writer_store().await;
    write_in_rounds(&store, WRITERS, ROUNDS).await;
    assert_one_transaction_a_round(&events_per_transaction(&store).await, WRITERS, ROUNDS);
}

/// One transaction a round of [`write_in_rounds`] once the writers run in step, a few more
/// while they get there; `sizes` are the events of each transaction.
pub(crate) fn assert_one_transaction_a_round(sizes: &[usize], writers: usize, rounds: usize) {
    assert_eq!(sizes.iter().sum::<usize>(), writers * rounds);
    assert!(
        sizes.len() <= rounds + 4,
        "{} transactions for {rounds} rounds of {writers} appends: {sizes:?}",
        sizes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_on_one_stream_in_one_group_let_exactly_one_win() {
    let store = one_writer_store().await;
    seed(&store, "cart-hot").await;
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
    assert_eq!(versions(&store, "cart-hot").await, vec![1, 2], "no gap, no duplicate");
    assert!(events_per_transaction(&store).await.iter().any(|n| *n > 1), "the race was not grouped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_event_id_fails_only_its_own_append() {
    a_reused_event_id_among_others_fails_alone(&one_writer_store().await).await;
}

fn events(from: usize, n: usize) -> Vec<NewEvent> {
    (from..from + n).map(event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_event_appends_that_arrive_together_share_a_transaction() {
    let store = one_writer_store().await;
    let appends = (0..60)
        .map(|i| AppendRequest::single(format!("cart-m{i}"), ExpectedVersion::NoStream, events(i * 10, 1 + i % 10)))
        .collect();
    let results = all_at_once(&store, appends).await;

    for (i, result) in results.iter().enumerate() {
        let outcome = result.as_ref().unwrap_or_else(|e| panic!("cart-m{i}: {e:?}"));
        let stored = store.read_stream(&format!("cart-m{i}"), 1, 100).await.expect("read");
        assert_eq!(stored.len(), 1 + i % 10, "cart-m{i}");
        let data: Vec<_> = stored.iter().map(|e| e.data.to_value()).collect();
        assert_eq!(
            data,
            (i * 10..i * 10 + stored.len()).map(|n| json!({ "n": n })).collect::<Vec<_>>(),
            "cart-m{i}"
        );
        assert_eq!(outcome.positions, stored.iter().map(|e| e.position).collect::<Vec<_>>(), "cart-m{i}");
        assert_eq!(
            (outcome.streams[0].first_version, outcome.streams[0].last_version),
            (1, stored.len() as u64)
        );
    }
    let sizes = events_per_transaction(&store).await;
    assert_eq!(sizes.iter().sum::<usize>(), (0..60).map(|i| 1 + i % 10).sum::<usize>());
    assert!(
        sizes.iter().any(|n| *n > 10),
        "no transaction held more than one caller's events: {sizes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_multi_event_appends_are_written_whole_or_not_at_all() {
    let store = one_writer_store().await;
    seed(&store, "cart-hot").await;
    // Thirty callers append 2..=6 events each to one stream, all expecting version 1: with
    // `on conflict do nothing` a loser of 6 events would keep the versions the winner's
    // shorter append left free. Beside them, appends to streams of their own.
    let mut appends: Vec<AppendRequest> = (0..30)
        .map(|i| AppendRequest::single("cart-hot", ExpectedVersion::Exact(1), events(i * 10, 2 + i % 5)))
        .collect();
    appends.extend((0..30).map(|i| AppendRequest::single(format!("cart-m{i}"), ExpectedVersion::NoStream, events(i * 10, 1 + i % 10))));
    let results = all_at_once(&store, appends).await;

    let (hot, own) = results.split_at(30);
    let winners: Vec<usize> = (0..30).filter(|i| hot[*i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one of the racing appends wins: {hot:?}");
    let won = 2 + winners[0] % 5;
    let stored = store.read_stream("cart-hot", 1, 100).await.expect("read");
    assert_eq!(
        stored.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=1 + won as u64).collect::<Vec<_>>(),
        "the winner's events, whole, and nothing of any loser"
    );
    let expected_data: Vec<_> = (winners[0] * 10..winners[0] * 10 + won).map(|n| json!({ "n": n })).collect();
    assert_eq!(stored[1..].iter().map(|e| e.data.to_value()).collect::<Vec<_>>(), expected_data);
    for result in hot.iter().filter(|r| r.is_err()) {
        match result {
            Err(StoreError::Conflict { stream, expected, actual }) => {
                assert_eq!(
                    (stream.as_str(), *expected, *actual),
                    ("cart-hot", ExpectedVersion::Exact(1), 1 + won as u64)
                );
            }
            other => panic!("a loser gets a conflict, not {other:?}"),
        }
    }
    for (i, result) in own.iter().enumerate() {
        assert!(result.is_ok(), "cart-m{i}: {result:?}");
        assert_eq!(store.read_stream(&format!("cart-m{i}"), 1, 100).await.expect("read").len(), 1 + i % 10);
    }
}

/// In a group, an append expecting no stream is refused for a stream that was archived or
/// truncated (the statement reads nothing for it: the stream's marker holds version 1's
/// key), and `Exact(n)` for an archived one, single-event and multi-event groups alike;
/// the other appends of the group are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_appends_to_archived_and_truncated_streams_are_refused_alone() {
    let store = one_writer_store().await;
    store
        .append(AppendRequest::single("cart-gone", ExpectedVersion::NoStream, (0..3).map(event).collect()))
        .await
        .expect("cart-gone");
    store
        .archive_stream("cart-gone", ExpectedVersion::Exact(3), store::ArchiveReason::Admin, "admin")
        .await
        .expect("archive");
    store
        .append(AppendRequest::single(
            "product-cut",
            ExpectedVersion::NoStream,
            (0..4).map(event).collect(),
        ))
        .await
        .expect("product-cut");
    let snapshot = store::Snapshot {
        stream_id: "product-cut".into(),
        state_schema_version: 1,
        version: 3,
        state: json!({}),
    };
    store.save_snapshot(&snapshot).await.expect("snapshot");
    assert_eq!(store.truncate_stream("product-cut", 3).await.expect("truncate"), 3);

    for events in [1, 3] {
        let batch = |i: usize| (0..events).map(|n| event(i * 10 + n)).collect::<Vec<_>>();
        let mut appends: Vec<AppendRequest> = (0..30)
            .map(|i| AppendRequest::single(format!("cart-n{events}-{i}"), ExpectedVersion::NoStream, batch(i)))
            .collect();
        appends.push(AppendRequest::single("cart-gone", ExpectedVersion::NoStream, batch(90)));
        appends.push(AppendRequest::single("cart-gone", ExpectedVersion::Exact(3), batch(91)));
        appends.push(AppendRequest::single("product-cut", ExpectedVersion::NoStream, batch(92)));
        let results = all_at_once(&store, appends).await;
        let (fresh, refused) = results.split_at(30);
        assert!(fresh.iter().all(Result::is_ok), "{events}-event appends to new streams: {fresh:?}");
        for result in &refused[..2] {
            assert!(
                matches!(result, Err(StoreError::StreamArchived { version: 3, .. })),
                "an archived stream refuses {events}-event appends: {result:?}"
            );
        }
        assert!(
            matches!(&refused[2], Err(StoreError::Conflict { actual: 4, .. })),
            "a truncated stream exists: {:?}",
            refused[2]
        );
    }
    assert_eq!(versions(&store, "product-cut").await, vec![1, 2, 3, 4], "no second version 1");
    assert!(events_per_transaction(&store).await.iter().any(|n| *n > 1), "nothing was grouped");
}

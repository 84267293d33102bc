//! The event store's behaviour, written once and run against every backend (see
//! `backends.rs`), as pyeventsourcing does with its recorder suites. Each function gets
//! the URL of a fresh, empty database of one backend.
//!
//! One file (about 650 lines): it is the one suite every backend must pass, and reads as the
//! store's specification; split, a backend could miss a part.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use store::{
    AppendRequest, EventStore, ExpectedVersion, IdempotencyKey, LiveFeed, LiveFeedOptions, Metadata, NewEvent, Position, Resume, Snapshot, StoreError,
};

pub async fn open(url: &str) -> Arc<dyn EventStore> {
    store::connect(url).await.unwrap_or_else(|e| panic!("open store at {url}: {e:?}"))
}

fn event(kind: &str, n: u64) -> NewEvent {
    NewEvent::new(
        kind,
        1,
        json!({ "n": n }),
        Metadata {
            actor: "tester".into(),
            ..Default::default()
        },
    )
}

fn events(kind: &str, count: u64) -> Vec<NewEvent> {
    (1..=count).map(|n| event(kind, n)).collect()
}

fn single(stream: &str, expected: ExpectedVersion, count: u64) -> AppendRequest {
    AppendRequest::single(stream, expected, events("Something", count))
}

async fn all_events(store: &dyn EventStore) -> Vec<store::RecordedEvent> {
    store.read_all(Position::START, 100_000, None).await.expect("read_all")
}

fn assert_conflict(result: Result<store::AppendOutcome, StoreError>, stream: &str, expected: ExpectedVersion, actual: u64) {
    match result {
        Err(StoreError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual), "conflict details");
        }
        other => panic!("expected a conflict on {stream}, got {other:?}"),
    }
}

pub async fn appends_and_reads_a_stream(url: &str) {
    let store = open(url).await;
    let metadata = Metadata {
        correlation_id: Some(uuid::Uuid::new_v4()),
        causation_id: Some(uuid::Uuid::new_v4()),
        actor: "alice".into(),
        idempotency_key: Some("k1".into()),
        trace: Some(store::TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("congo=t61rcWkgMzE".into()),
        }),
    };
    let first = NewEvent::new("CartCreated", 1, json!({"customer_id": "alice"}), metadata.clone());
    let outcome = store
        .append(AppendRequest::single("cart-1", ExpectedVersion::NoStream, vec![first.clone()]))
        .await
        .unwrap();
    assert_eq!((outcome.streams[0].first_version, outcome.streams[0].last_version), (1, 1));
    assert!(!outcome.replayed);
    let outcome2 = store.append(single("cart-1", ExpectedVersion::Exact(1), 3)).await.unwrap();
    assert_eq!((outcome2.streams[0].first_version, outcome2.streams[0].last_version), (2, 4));
    assert_eq!(outcome2.positions.len(), 3);
    assert!(outcome2.positions.windows(2).all(|w| w[0] < w[1]), "positions increase within an append");
    assert!(outcome.last_position() < outcome2.positions[0]);

    let read = store.read_stream("cart-1", 1, 100).await.unwrap();
    assert_eq!(read.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    // What folding reads: the same events without stream id, event id and metadata, paged
    // by version like read_stream.
    let loaded = store.load_stream("cart-1", 2, 2).await.unwrap();
    let expected: Vec<store::StreamEvent> = read[1..3].iter().cloned().map(Into::into).collect();
    assert_eq!(loaded, expected);
    assert!(store.load_stream("cart-1", 5, 10).await.unwrap().is_empty());
    assert_eq!(read[0].event_id, first.event_id);
    assert_eq!(read[0].event_type, "CartCreated");
    assert_eq!(read[0].data, json!({"customer_id": "alice"}));
    assert_eq!(read[0].metadata, metadata);
    assert_eq!(read[0].stream_id, "cart-1");
    assert_eq!(read[0].category(), "cart");
    assert_eq!(read[0].position, outcome.positions[0]);
    let age = time::OffsetDateTime::now_utc() - read[0].recorded_at;
    assert!(
        age < time::Duration::minutes(5) && age > time::Duration::minutes(-5),
        "recorded_at is now-ish: {}",
        read[0].recorded_at
    );
    assert!(read.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));

    assert_eq!(
        store
            .read_stream("cart-1", 3, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(
        store
            .read_stream("cart-1", 2, 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(store.read_stream("cart-nope", 1, 100).await.unwrap().is_empty());
    assert_eq!(store.stream_version("cart-1").await.unwrap(), 4);
    assert_eq!(store.stream_version("cart-nope").await.unwrap(), 0);
}

pub async fn expectations_are_enforced(url: &str) {
    let store = open(url).await;
    store.append(single("cart-a", ExpectedVersion::NoStream, 2)).await.unwrap();

    assert_conflict(
        store.append(single("cart-a", ExpectedVersion::NoStream, 1)).await,
        "cart-a",
        ExpectedVersion::NoStream,
        2,
    );
    assert_conflict(
        store.append(single("cart-a", ExpectedVersion::Exact(1), 1)).await,
        "cart-a",
        ExpectedVersion::Exact(1),
        2,
    );
    assert_conflict(
        store.append(single("cart-a", ExpectedVersion::Exact(5), 1)).await,
        "cart-a",
        ExpectedVersion::Exact(5),
        2,
    );
    assert_conflict(
        store.append(single("cart-b", ExpectedVersion::Exact(1), 1)).await,
        "cart-b",
        ExpectedVersion::Exact(1),
        0,
    );
    assert_eq!(all_events(&*store).await.len(), 2, "rejected appends wrote nothing");

    store.append(single("cart-a", ExpectedVersion::Exact(2), 1)).await.unwrap();
    let any = store.append(single("cart-a", ExpectedVersion::Any, 2)).await.unwrap();
    assert_eq!((any.streams[0].first_version, any.streams[0].last_version), (4, 5));
    let fresh = store.append(single("cart-c", ExpectedVersion::Exact(0), 1)).await.unwrap();
    assert_eq!(fresh.streams[0].last_version, 1, "Exact(0) means no stream yet");
    assert_eq!(store.stream_version("cart-a").await.unwrap(), 5);
}

/// 32 writers race with the same expected version: exactly one wins, the others get a
/// conflict, and the stream has no gap and no duplicate version.
pub async fn concurrent_appends_with_same_expectation_have_one_winner(url: &str) {
    let store = open(url).await;
    store.append(single("order-race", ExpectedVersion::NoStream, 1)).await.unwrap();
    let attempts = (0..32).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.append(single("order-race", ExpectedVersion::Exact(1), 2)).await })
    });
    let results = futures::future::join_all(attempts).await;
    let mut wins = 0;
    for result in results {
        match result.expect("task") {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { stream, expected, actual }) => {
                assert_eq!((stream.as_str(), expected, actual), ("order-race", ExpectedVersion::Exact(1), 3));
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    let versions: Vec<u64> = store.read_stream("order-race", 1, 100).await.unwrap().iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
}

/// Writers with `Any` never conflict, however many race.
pub async fn concurrent_any_appends_all_apply(url: &str) {
    let store = open(url).await;
    let attempts = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.append(single("cart-busy", ExpectedVersion::Any, 1)).await })
    });
    for result in futures::future::join_all(attempts).await {
        result.expect("task").expect("an Any append never conflicts");
    }
    let versions: Vec<u64> = store.read_stream("cart-busy", 1, 100).await.unwrap().iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=20).collect::<Vec<_>>());
}

pub async fn multi_stream_appends_are_atomic(url: &str) {
    let store = open(url).await;
    store.append(single("product-apple", ExpectedVersion::NoStream, 1)).await.unwrap();
    store.append(single("product-pear", ExpectedVersion::NoStream, 2)).await.unwrap();

    // One stale expectation rejects the whole call, naming the stream at fault.
    let request = AppendRequest::default()
        .with_stream("cart-x", ExpectedVersion::NoStream, events("CartCheckedOut", 1))
        .with_stream("product-apple", ExpectedVersion::Exact(1), events("StockReserved", 1))
        .with_stream("product-pear", ExpectedVersion::Exact(1), events("StockReserved", 1))
        .with_stream("order-x", ExpectedVersion::NoStream, events("OrderPlaced", 1));
    assert_conflict(store.append(request).await, "product-pear", ExpectedVersion::Exact(1), 2);
    assert_eq!(store.stream_version("cart-x").await.unwrap(), 0);
    assert_eq!(store.stream_version("product-apple").await.unwrap(), 1);
    assert_eq!(store.stream_version("order-x").await.unwrap(), 0);
    assert_eq!(all_events(&*store).await.len(), 3);

    let request = AppendRequest::default()
        .with_stream("cart-x", ExpectedVersion::NoStream, events("CartCheckedOut", 1))
        .with_stream("product-apple", ExpectedVersion::Exact(1), events("StockReserved", 1))
        .with_stream("product-pear", ExpectedVersion::Exact(2), events("StockReserved", 2))
        .with_stream("order-x", ExpectedVersion::NoStream, events("OrderPlaced", 1));
    let outcome = store.append(request).await.unwrap();
    let summary: Vec<(&str, u64, u64)> = outcome
        .streams
        .iter()
        .map(|s| (s.stream_id.as_str(), s.first_version, s.last_version))
        .collect();
    assert_eq!(
        summary,
        vec![("cart-x", 1, 1), ("product-apple", 2, 2), ("product-pear", 3, 4), ("order-x", 1, 1)]
    );
    assert_eq!(outcome.positions.len(), 5);
    assert!(outcome.positions.windows(2).all(|w| w[0] < w[1]));
    let all = all_events(&*store).await;
    assert_eq!(all.len(), 8);
    let tail: Vec<Position> = all[3..].iter().map(|e| e.position).collect();
    assert_eq!(tail, outcome.positions, "the call's events are adjacent in the feed, in request order");
}

/// Appends larger than one insert statement (SQLite writes a stream's events in statements
/// of 32 rows) keep their order: versions, positions and data follow the request.
pub async fn large_appends_keep_the_request_order(url: &str) {
    let store = open(url).await;
    store.append(single("cart-big", ExpectedVersion::NoStream, 3)).await.unwrap();
    let request = AppendRequest::default()
        .with_stream("cart-big", ExpectedVersion::Exact(3), events("Big", 70))
        .with_stream("cart-small", ExpectedVersion::NoStream, events("Small", 33));
    let outcome = store.append(request).await.unwrap();
    assert_eq!(outcome.positions.len(), 103);
    assert!(outcome.positions.windows(2).all(|w| w[0] < w[1]));
    let big = store.read_stream("cart-big", 4, 1_000).await.unwrap();
    assert_eq!(big.iter().map(|e| e.version).collect::<Vec<_>>(), (4..=73).collect::<Vec<_>>());
    let data: Vec<serde_json::Value> = big.iter().map(|e| e.data.to_value()).collect();
    assert_eq!(data, events("Big", 70).into_iter().map(|e| e.data).collect::<Vec<_>>());
    assert_eq!(big.iter().map(|e| e.position).collect::<Vec<_>>(), outcome.positions[..70]);
    let small = store.read_stream("cart-small", 1, 1_000).await.unwrap();
    assert_eq!(small.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=33).collect::<Vec<_>>());
    assert_eq!(small.iter().map(|e| e.position).collect::<Vec<_>>(), outcome.positions[70..]);

    // The same event id twice in one call, or an id already stored, is the caller's mistake
    // (not a conflict), and writes nothing: in a large append and in a small one (SQLite
    // writes a small one-stream append in one statement).
    let stored = big[5].event_id;
    for count in [40, 10] {
        let mut twice = events("Repeated", count);
        twice[count as usize / 2].event_id = twice[2].event_id;
        let mut again = events("Again", count);
        again[count as usize - 1].event_id = stored;
        for (stream, repeated) in [("cart-twice", twice), ("cart-again", again)] {
            let result = store.append(AppendRequest::single(stream, ExpectedVersion::NoStream, repeated)).await;
            assert!(
                matches!(result, Err(StoreError::InvalidRequest(_))),
                "{count} events to {stream}: {result:?}"
            );
            assert_eq!(store.stream_version(stream).await.unwrap(), 0);
        }
    }
    assert_eq!(all_events(&*store).await.len(), 106);
}

pub async fn invalid_appends_are_rejected(url: &str) {
    let store = open(url).await;
    let empty = store.append(AppendRequest::default()).await;
    assert!(matches!(empty, Err(StoreError::InvalidRequest(_))), "{empty:?}");
    let no_events = store.append(AppendRequest::single("cart-1", ExpectedVersion::Any, vec![])).await;
    assert!(matches!(no_events, Err(StoreError::InvalidRequest(_))), "{no_events:?}");
    let no_id = store.append(single("", ExpectedVersion::Any, 1)).await;
    assert!(matches!(no_id, Err(StoreError::InvalidRequest(_))), "{no_id:?}");
    let twice = store
        .append(
            AppendRequest::default()
                .with_stream("cart-1", ExpectedVersion::Any, events("A", 1))
                .with_stream("cart-1", ExpectedVersion::Any, events("B", 1)),
        )
        .await;
    assert!(matches!(twice, Err(StoreError::InvalidRequest(_))), "{twice:?}");
    assert!(all_events(&*store).await.is_empty());
}

fn keyed(stream: &str, expected: ExpectedVersion, actor: &str, key: &str, fingerprint: &str) -> AppendRequest {
    single(stream, expected, 1).with_idempotency(IdempotencyKey {
        actor: actor.into(),
        key: key.into(),
        fingerprint: fingerprint.into(),
    })
}

/// A repeated (actor, key) returns the first outcome and appends nothing, also after a
/// restart; the same key for a different request is an error; keys are per actor.
pub async fn idempotency_keys_return_the_first_outcome(url: &str) {
    let store = open(url).await;
    let first = store
        .append(keyed("cart-i", ExpectedVersion::Any, "alice", "add-1", "fp-a"))
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = store
        .append(keyed("cart-i", ExpectedVersion::Any, "alice", "add-1", "fp-a"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.streams.clone(), again.positions.clone()),
        (first.streams.clone(), first.positions.clone())
    );
    assert_eq!(store.stream_version("cart-i").await.unwrap(), 1);

    // The stored outcome wins even though an expectation would now fail.
    store.append(single("cart-i", ExpectedVersion::Any, 1)).await.unwrap();
    let stale = store
        .append(keyed("cart-i", ExpectedVersion::NoStream, "alice", "add-1", "fp-a"))
        .await
        .unwrap();
    assert_eq!(stale.positions, first.positions);

    let reused = store.append(keyed("cart-i", ExpectedVersion::Any, "alice", "add-1", "fp-other")).await;
    assert!(
        matches!(&reused, Err(StoreError::IdempotencyKeyReused { actor, key }) if actor == "alice" && key == "add-1"),
        "{reused:?}"
    );

    let bob = store.append(keyed("cart-i", ExpectedVersion::Any, "bob", "add-1", "fp-a")).await.unwrap();
    assert!(!bob.replayed, "another caller's identical key is a different key");
    assert_eq!(store.stream_version("cart-i").await.unwrap(), 3);

    // A rejected append stores no outcome: the key stays free for a corrected retry.
    assert_conflict(
        store.append(keyed("cart-j", ExpectedVersion::Exact(7), "alice", "k2", "fp")).await,
        "cart-j",
        ExpectedVersion::Exact(7),
        0,
    );
    assert!(store.idempotent_outcome("alice", "k2").await.unwrap().is_none());
    store
        .append(keyed("cart-j", ExpectedVersion::NoStream, "alice", "k2", "fp"))
        .await
        .unwrap();

    // Durable: a new store on the same database remembers.
    drop(store);
    let reopened = open(url).await;
    let (fingerprint, outcome) = reopened.idempotent_outcome("alice", "add-1").await.unwrap().expect("stored outcome");
    assert_eq!((fingerprint.as_str(), outcome.positions.clone()), ("fp-a", first.positions.clone()));
    let after_restart = reopened
        .append(keyed("cart-i", ExpectedVersion::Any, "alice", "add-1", "fp-a"))
        .await
        .unwrap();
    assert!(after_restart.replayed);
    assert_eq!(reopened.stream_version("cart-i").await.unwrap(), 3);
}

/// Eight concurrent copies of one keyed request append once.
pub async fn concurrent_duplicate_keys_append_once(url: &str) {
    let store = open(url).await;
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.append(keyed("cart-dup", ExpectedVersion::Any, "alice", "same", "fp")).await })
    });
    let outcomes: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("append"))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.positions == outcomes[0].positions));
    assert_eq!(store.stream_version("cart-dup").await.unwrap(), 1);
}

pub async fn global_feed_is_ordered_pageable_and_filterable(url: &str) {
    let store = open(url).await;
    for i in 0..10 {
        let category = ["cart", "order", "product"][i % 3];
        store
            .append(single(&format!("{category}-{i}"), ExpectedVersion::NoStream, 2))
            .await
            .unwrap();
    }
    let all = all_events(&*store).await;
    assert_eq!(all.len(), 20);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position), "strictly increasing positions");
    assert_eq!(store.head_position().await.unwrap(), all[19].position);

    let mut paged = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_all(after, 3, None).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        paged.extend(page);
    }
    assert_eq!(paged, all, "paging reads the same feed");

    let carts_and_orders = store
        .read_all(Position::START, 100, Some(&["cart".to_string(), "order".to_string()]))
        .await
        .unwrap();
    assert_eq!(carts_and_orders.len(), 14);
    assert!(carts_and_orders.iter().all(|e| e.category() != "product"));
    let after_fifth = store.read_all(all[4].position, 100, Some(&["product".to_string()])).await.unwrap();
    assert!(after_fifth.iter().all(|e| e.position > all[4].position && e.category() == "product"));
    assert_eq!(after_fifth.len(), all[5..].iter().filter(|e| e.category() == "product").count());

    // Pages of a filter over several categories (named twice, and one without events) are
    // the filtered feed, each event once, in position order.
    let filter: Vec<String> = ["order", "cart", "order", "none"].map(String::from).to_vec();
    let mut paged = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_all(after, 4, Some(&filter)).await.unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = last.position;
        paged.extend(page);
    }
    let expected: Vec<_> = all.iter().filter(|e| e.category() != "product").cloned().collect();
    assert_eq!(paged, expected, "paging a multi-category filter reads the filtered feed");

    // As many categories as allowed is one statement still; one more is refused.
    let mut most: Vec<String> = (1..store::MAX_FEED_CATEGORIES).map(|i| format!("c{i}")).collect();
    most.push("product".into());
    let products = store.read_all(Position::START, 100, Some(&most)).await.unwrap();
    assert_eq!(products.len(), all.iter().filter(|e| e.category() == "product").count());
    let too_many: Vec<String> = (0..=store::MAX_FEED_CATEGORIES).map(|i| format!("c{i}")).collect();
    assert!(matches!(
        store.read_all(Position::START, 10, Some(&too_many)).await,
        Err(StoreError::InvalidRequest(_))
    ));
}

async fn next_event(
    stream: &mut futures::stream::BoxStream<'static, Result<std::sync::Arc<store::RecordedEvent>, StoreError>>,
) -> std::sync::Arc<store::RecordedEvent> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the subscription is open")
        .expect("no error")
}

/// Catch up from a position, then follow live commits: each event once, in order.
pub async fn subscriptions_catch_up_then_follow(url: &str) {
    let store = open(url).await;
    store.append(single("cart-s", ExpectedVersion::NoStream, 3)).await.unwrap();
    store.append(single("order-s", ExpectedVersion::NoStream, 1)).await.unwrap();
    let existing = all_events(&*store).await;
    let feed = LiveFeed::start(store.clone());

    let mut all = feed.all(existing[0].position, None);
    let mut carts_only = feed.all(Position::START, Some(vec!["cart".into()]));
    let mut one_stream = feed.stream("cart-s", 2);
    for expected in &existing[1..] {
        assert_eq!(next_event(&mut all).await.event_id, expected.event_id);
    }
    for version in 1..=3 {
        assert_eq!(next_event(&mut carts_only).await.version, version);
    }
    assert_eq!(next_event(&mut one_stream).await.version, 3);

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                store.append(single("cart-s", ExpectedVersion::Any, 1)).await.unwrap();
                store.append(single("order-s", ExpectedVersion::Any, 1)).await.unwrap();
            }
        })
    };
    let mut seen = HashSet::new();
    let mut last = existing.last().map(|e| e.position).unwrap_or_default();
    for _ in 0..40 {
        let event = next_event(&mut all).await;
        assert!(event.position > last, "increasing positions");
        last = event.position;
        assert!(seen.insert(event.event_id), "no duplicate");
    }
    for version in 4..=23 {
        let event = next_event(&mut one_stream).await;
        assert_eq!((event.stream_id.as_str(), event.version), ("cart-s", version));
        let event = next_event(&mut carts_only).await;
        assert_eq!((event.stream_id.as_str(), event.version), ("cart-s", version));
    }
    writer.await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), one_stream.next()).await.is_err(),
        "nothing more than was written"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), carts_only.next()).await.is_err(),
        "the filtered feed holds no other category"
    );
    assert_eq!(feed.subscriber_count(), 3);
    drop((all, carts_only, one_stream));
    assert_eq!(feed.subscriber_count(), 0, "a dropped subscription leaves the feed at once");
}

/// Subscribers that join while a writer appends continuously (small pages, so catch-up and
/// the reader both page) each see every version once, in order, from where they asked.
pub async fn subscribers_joining_during_commits_miss_nothing(url: &str) {
    const APPENDS: u64 = 120;
    let store = open(url).await;
    let options = LiveFeedOptions {
        page: 7,
        ..Default::default()
    };
    let feed = LiveFeed::start_with(store.clone(), options);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..APPENDS {
                // One or two events per append, and another category in between.
                let count = 1 + n % 2;
                store.append(single("cart-j", ExpectedVersion::Any, count)).await.unwrap();
                store.append(single("order-j", ExpectedVersion::Any, 1)).await.unwrap();
            }
        })
    };
    let total: u64 = (0..APPENDS).map(|n| 1 + n % 2).sum();
    let mut readers = Vec::new();
    for join_at in [0, 10, 40, 90] {
        while store.stream_version("cart-j").await.unwrap() < join_at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let now = store.stream_version("cart-j").await.unwrap();
        for (after, mut subscription) in [
            (0, feed.stream("cart-j", 0)),
            (now, feed.stream("cart-j", now)),
            (0, feed.all(Position::START, Some(vec!["cart".into()]))),
        ] {
            readers.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                while versions.len() < (total - after) as usize {
                    versions.push(next_event(&mut subscription).await.version);
                }
                assert!(
                    tokio::time::timeout(Duration::from_millis(200), subscription.next()).await.is_err(),
                    "nothing beyond what was written"
                );
                (after, versions)
            }));
        }
    }
    writer.await.unwrap();
    for reader in readers {
        let (after, versions) = reader.await.unwrap();
        assert_eq!(
            versions,
            (after + 1..=total).collect::<Vec<_>>(),
            "every version once, in order, after {after}"
        );
    }
}

/// A subscriber that stops reading delays neither a writer nor another subscriber; once its
/// buffer overflows it is dropped, delivers what it had buffered, and ends with an error
/// that says where to resume, from where a new subscription continues with no gap.
pub async fn slow_subscribers_are_dropped_and_delay_nobody(url: &str) {
    const APPENDS: u64 = 40;
    let store = open(url).await;
    let feed = LiveFeed::start_with(
        store.clone(),
        // Pages smaller than the buffer, as by default, so one page never fills a drained buffer.
        LiveFeedOptions {
            buffer: 8,
            page: 2,
            ..Default::default()
        },
    );
    store.append(single("cart-slow", ExpectedVersion::NoStream, 1)).await.unwrap();
    let mut slow = feed.stream("cart-slow", 0);
    let mut slow_feed = feed.all(Position::START, None);
    assert_eq!(next_event(&mut slow).await.version, 1, "live after catching up");
    let first = next_event(&mut slow_feed).await;
    let mut fast = feed.stream("cart-slow", 0);
    let mut fast_versions = vec![next_event(&mut fast).await.version];
    // The writer appends one at a time while `slow` and `slow_feed` read nothing; `fast`
    // takes each event before the next append, so it is never more than one behind however
    // the machine schedules it (in its own task, a busy machine once starved it of eight).
    let written = tokio::time::timeout(Duration::from_secs(30), async {
        for _ in 0..APPENDS {
            store.append(single("cart-slow", ExpectedVersion::Any, 1)).await.unwrap();
            fast_versions.push(next_event(&mut fast).await.version);
        }
    })
    .await;
    assert!(written.is_ok(), "the writer was held up");
    assert_eq!(fast_versions, (1..=APPENDS + 1).collect::<Vec<_>>());

    let mut delivered = vec![1];
    let resume = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await.expect("not stuck") {
            Some(Ok(event)) => delivered.push(event.version),
            Some(Err(StoreError::SubscriberTooSlow { resume })) => break resume,
            other => panic!("expected events, then too slow: {other:?}"),
        }
    };
    assert!(slow.next().await.is_none(), "the stream ends after the error");
    let last = *delivered.last().unwrap();
    assert_eq!(delivered, (1..=last).collect::<Vec<_>>(), "what it had buffered, in order");
    assert!(last <= 1 + 8, "no more than its buffer: {last}");
    assert_eq!(resume, Resume::AfterVersion(last));
    let mut resumed = feed.stream("cart-slow", last);
    for version in last + 1..=APPENDS + 1 {
        assert_eq!(next_event(&mut resumed).await.version, version);
    }

    let mut after = first.position;
    let resume = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow_feed.next()).await.expect("not stuck") {
            Some(Ok(event)) => after = event.position,
            Some(Err(StoreError::SubscriberTooSlow { resume })) => break resume,
            other => panic!("expected events, then too slow: {other:?}"),
        }
    };
    assert_eq!(resume, Resume::AfterPosition(after));
    drop((slow, slow_feed, resumed, fast));
    assert_eq!(feed.subscriber_count(), 0, "dropped and finished subscribers leave nothing behind");
}

/// Stored seed-era events (ItemAddedToCart schema v1) are read lifted to the current
/// schema; the stored bytes stay as they were.
pub async fn old_schemas_are_upcast_on_read(url: &str) {
    let store = open(url).await;
    let (stream, old) = store::testing::seed_cart_v1();
    store
        .append(AppendRequest::single(&stream, ExpectedVersion::NoStream, old))
        .await
        .unwrap();

    let read = store.read_stream(&stream, 1, 100).await.unwrap();
    let added: Vec<_> = read.iter().filter(|e| e.event_type == "ItemAddedToCart").collect();
    assert_eq!(added.len(), 3);
    for event in &added {
        assert_eq!(event.schema_version, 2, "lifted to the current schema");
        let data = event.data.to_value();
        assert!(data.get("item_id").is_none());
        assert_eq!(data["unit_price"], json!(0));
    }
    assert_eq!(added[0].data, json!({"sku": "apple", "name": "apple", "quantity": 2, "unit_price": 0}));
    let from_feed = store.read_all(Position::START, 100, None).await.unwrap();
    assert_eq!(from_feed, read, "the feed upcasts too");
    let loaded = store.load_stream(&stream, 1, 100).await.unwrap();
    let expected: Vec<store::StreamEvent> = read.into_iter().map(Into::into).collect();
    assert_eq!(loaded, expected, "loads for folding upcast too");
}

/// A snapshot is found only under its state schema version, so one written by older code
/// (another version) is ignored rather than misread; saving never moves it backwards.
pub async fn snapshots_are_keyed_by_state_schema_version(url: &str) {
    let store = open(url).await;
    assert!(store.load_snapshot("cart-snap", 1).await.unwrap().is_none());
    let v10 = Snapshot {
        stream_id: "cart-snap".into(),
        state_schema_version: 1,
        version: 10,
        state: json!({"lines": 3}),
    };
    store.save_snapshot(&v10).await.unwrap();
    assert_eq!(store.load_snapshot("cart-snap", 1).await.unwrap(), Some(v10.clone()));
    assert!(
        store.load_snapshot("cart-snap", 2).await.unwrap().is_none(),
        "another state schema is not trusted"
    );

    let v20 = Snapshot {
        version: 20,
        state: json!({"lines": 5}),
        ..v10.clone()
    };
    store.save_snapshot(&v20).await.unwrap();
    store.save_snapshot(&v10).await.unwrap();
    assert_eq!(
        store.load_snapshot("cart-snap", 1).await.unwrap(),
        Some(v20),
        "never moved back to an older version"
    );
}

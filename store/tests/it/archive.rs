//! Retention and archiving (#15), part of the behaviour suite: run against every backend by
//! `backends.rs`, each function with the URL of a fresh, empty database.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use store::{AppendRequest, ArchiveReason, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, Snapshot, StoreError};

use crate::contract::open;

fn events(count: u64) -> Vec<NewEvent> {
    (1..=count)
        .map(|n| {
            NewEvent::new(
                "Something",
                1,
                json!({ "n": n }),
                Metadata {
                    actor: "tester".into(),
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn single(stream: &str, expected: ExpectedVersion, count: u64) -> AppendRequest {
    AppendRequest::single(stream, expected, events(count))
}

async fn feed(store: &dyn EventStore, categories: Option<&[String]>) -> Vec<RecordedEvent> {
    store.read_all(Position::START, 100_000, categories).await.expect("read_all")
}

fn assert_archived<T: std::fmt::Debug>(result: Result<T, StoreError>, stream: &str, version: u64) {
    match result {
        Err(StoreError::StreamArchived { stream: s, version: v }) => assert_eq!((s.as_str(), v), (stream, version)),
        other => panic!("expected StreamArchived for {stream} at {version}, got {other:?}"),
    }
}

pub async fn archived_streams_refuse_appends_and_reads_and_keep_the_feed(url: &str) {
    let store = open(url).await;
    store.append(single("cart-a", ExpectedVersion::NoStream, 3)).await.unwrap();
    store.append(single("cart-b", ExpectedVersion::NoStream, 2)).await.unwrap();
    store.append(single("order-c", ExpectedVersion::NoStream, 1)).await.unwrap();
    let before = feed(&*store, None).await;
    let carts_before = feed(&*store, Some(&["cart".to_string()])).await;

    assert!(matches!(
        store
            .archive_stream("cart-nobody", ExpectedVersion::Any, ArchiveReason::Admin, "admin")
            .await,
        Err(StoreError::InvalidRequest(_))
    ));
    assert!(matches!(
        store
            .archive_stream("cart-a", ExpectedVersion::Exact(2), ArchiveReason::Admin, "admin")
            .await,
        Err(StoreError::Conflict { actual: 3, .. })
    ));
    let outcome = store
        .archive_stream("cart-a", ExpectedVersion::Exact(3), ArchiveReason::Admin, "admin-1")
        .await
        .unwrap();
    assert_eq!((outcome.version, outcome.moved, outcome.already), (3, 3, false));
    let again = store
        .archive_stream("cart-a", ExpectedVersion::Any, ArchiveReason::Admin, "admin")
        .await
        .unwrap();
    assert!(again.already && again.moved == 0 && again.version == 3);

    // The tombstone: every kind of append is refused, alone or with another stream
    // (atomically), and the version does not restart.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(3),
        ExpectedVersion::Any,
    ] {
        assert_archived(store.append(single("cart-a", expected, 1)).await, "cart-a", 3);
    }
    let both = AppendRequest::single("cart-b", ExpectedVersion::Exact(2), events(1)).with_stream("cart-a", ExpectedVersion::Any, events(1));
    assert_archived(store.append(both).await, "cart-a", 3);
    assert_eq!(
        store.stream_version("cart-b").await.unwrap(),
        2,
        "nothing of the refused append was written"
    );
    assert_eq!(store.stream_version("cart-a").await.unwrap(), 3);

    assert_archived(store.read_stream("cart-a", 1, 100).await, "cart-a", 3);
    assert_archived(store.load_stream("cart-a", 2, 100).await, "cart-a", 3);
    let tomb = store.archived_stream("cart-a").await.unwrap().expect("a tombstone");
    assert_eq!((tomb.version, tomb.reason.as_str(), tomb.actor.as_str()), (3, "ADMIN", "admin-1"));
    assert!(store.archived_stream("cart-b").await.unwrap().is_none());
    assert_eq!(
        store.read_stream("cart-b", 1, 100).await.unwrap().len(),
        2,
        "other streams read as before"
    );
    assert!(store.read_stream("cart-nobody", 1, 100).await.unwrap().is_empty());

    // The feed is the same, plus the archive log's one event, which is the head.
    let after = feed(&*store, None).await;
    assert_eq!(after[..before.len()], before[..], "archiving does not change the global feed");
    assert_eq!(after.len(), before.len() + 1);
    let marker = &after[before.len()];
    assert_eq!(
        (marker.stream_id.as_str(), marker.event_type.as_str()),
        (store::ARCHIVE_LOG_STREAM, store::STREAM_ARCHIVED)
    );
    let data: store::StreamArchivedData = serde_json::from_str(marker.data.get()).unwrap();
    assert_eq!((data.stream_id.as_str(), data.version, data.reason), ("cart-a", 3, ArchiveReason::Admin));
    assert_eq!(store.head_position().await.unwrap(), marker.position);
    assert_eq!(
        feed(&*store, Some(&["cart".to_string()])).await,
        carts_before,
        "a category feed is unchanged"
    );
    let mut paged = Vec::new();
    let mut at = Position::START;
    loop {
        let page = store.read_all(at, 2, None).await.unwrap();
        let Some(last) = page.last() else { break };
        at = last.position;
        paged.extend(page);
    }
    assert_eq!(paged, after, "pages read across the archive and the hot table");
    assert!(matches!(
        store
            .archive_stream(store::ARCHIVE_LOG_STREAM, ExpectedVersion::Any, ArchiveReason::Admin, "a")
            .await,
        Err(StoreError::InvalidRequest(_))
    ));
}

/// Eight tasks append to their own streams while other streams are archived and a reader
/// follows the feed: the reader sees every event exactly once, in position order, and the
/// archived streams' events too (the feed reads the archive), whenever they moved.
pub async fn archive_under_concurrent_writes_keeps_the_feed_exactly_once(url: &str) {
    let store = open(url).await;
    const OLD: usize = 12;
    for i in 0..OLD {
        store.append(single(&format!("cart-old{i}"), ExpectedVersion::NoStream, 3)).await.unwrap();
    }
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let stream = format!("cart-live{w}");
                for n in 0..40u64 {
                    let expected = if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(n) };
                    store.append(single(&stream, expected, 1)).await.expect("a live append");
                }
            })
        })
        .collect();
    let archiver = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..OLD {
                let outcome = store
                    .archive_stream(&format!("cart-old{i}"), ExpectedVersion::Exact(3), ArchiveReason::Retention, "retention")
                    .await
                    .expect("archive");
                assert_eq!(outcome.moved, 3);
                tokio::task::yield_now().await;
            }
        })
    };
    let expected_total = OLD * 3 + 8 * 40 + OLD;
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut after = Position::START;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < expected_total && tokio::time::Instant::now() < deadline {
                let page = store.read_all(after, 7, None).await.expect("read_all");
                if let Some(last) = page.last() {
                    after = last.position;
                } else {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                seen.extend(page);
            }
            seen
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    archiver.await.unwrap();
    let seen = reader.await.unwrap();

    assert!(seen.windows(2).all(|w| w[0].position < w[1].position), "positions strictly increase");
    let mut counts: HashMap<uuid::Uuid, usize> = HashMap::new();
    for event in &seen {
        *counts.entry(event.event_id).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "no event delivered twice");
    let all = feed(&*store, None).await;
    assert_eq!(all.len(), expected_total);
    assert_eq!(seen, all, "the follower saw exactly the whole feed");
    for w in 0..8 {
        assert_eq!(store.stream_version(&format!("cart-live{w}")).await.unwrap(), 40);
    }
    assert_eq!(all.iter().filter(|e| e.stream_id == store::ARCHIVE_LOG_STREAM).count(), OLD);
}

pub async fn truncation_behind_a_snapshot_keeps_the_stream(url: &str) {
    let store = open(url).await;
    store.append(single("product-tea", ExpectedVersion::NoStream, 10)).await.unwrap();
    let before = feed(&*store, None).await;
    assert!(
        matches!(store.truncate_stream("product-tea", 6).await, Err(StoreError::InvalidRequest(_))),
        "no snapshot, no truncation"
    );
    let snapshot = Snapshot {
        stream_id: "product-tea".into(),
        state_schema_version: 1,
        version: 6,
        state: json!({"on_hand": 6}),
    };
    store.save_snapshot(&snapshot).await.unwrap();
    assert!(matches!(
        store.truncate_stream("product-tea", 7).await,
        Err(StoreError::InvalidRequest(_))
    ));
    assert_eq!(store.truncate_stream("product-tea", 6).await.unwrap(), 6);
    assert_eq!(store.truncate_stream("product-tea", 6).await.unwrap(), 0, "nothing left to move");

    let tail = store.load_stream("product-tea", 7, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
    let whole = store.read_stream("product-tea", 1, 100).await.unwrap();
    assert_eq!(
        whole.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>(),
        "old versions come from the archive"
    );
    assert_eq!(
        store
            .load_stream("product-tea", 3, 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(feed(&*store, None).await, before, "the feed is unchanged");
    assert_eq!(store.stream_version("product-tea").await.unwrap(), 10);
    assert!(store.archived_stream("product-tea").await.unwrap().is_none(), "truncated is not archived");

    // The stream goes on: a new version 1 is impossible, version 11 is fine.
    assert!(matches!(
        store.append(single("product-tea", ExpectedVersion::NoStream, 1)).await,
        Err(StoreError::Conflict { actual: 10, .. })
    ));
    // Versions 1 and 5 are in the archive now (on Postgres version 1's key is held by the
    // stream's marker, which must not pass for version 1 itself).
    for moved in [1, 5] {
        assert!(matches!(
            store.append(single("product-tea", ExpectedVersion::Exact(moved), 1)).await,
            Err(StoreError::Conflict { actual: 10, .. })
        ));
    }
    store.append(single("product-tea", ExpectedVersion::Exact(10), 1)).await.unwrap();
    store.append(single("product-tea", ExpectedVersion::Any, 1)).await.unwrap();
    assert_eq!(store.stream_version("product-tea").await.unwrap(), 12);

    // Truncating everything behind a snapshot at the head keeps the last event.
    store.save_snapshot(&Snapshot { version: 12, ..snapshot }).await.unwrap();
    assert_eq!(store.truncate_stream("product-tea", 12).await.unwrap(), 5);
    assert_eq!(store.load_stream("product-tea", 13, 100).await.unwrap().len(), 0);
    assert_eq!(store.read_stream("product-tea", 12, 100).await.unwrap().len(), 1);
    store.append(single("product-tea", ExpectedVersion::Exact(12), 1)).await.unwrap();

    // Archiving a truncated stream archives what is left; the archive holds the rest.
    let archived = store
        .archive_stream("product-tea", ExpectedVersion::Any, ArchiveReason::Admin, "admin")
        .await
        .unwrap();
    assert_eq!((archived.version, archived.moved), (13, 2));
    assert_archived(store.read_stream("product-tea", 1, 100).await, "product-tea", 13);
    assert_archived(store.append(single("product-tea", ExpectedVersion::NoStream, 1)).await, "product-tea", 13);
}

/// Postgres only: archiving waits for appends in flight (the append that read the stream
/// before archiving began ends up archived too, never written after the move), and gives up
/// after its lock timeout with a transient error instead of holding writers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archive_waits_for_appends_in_flight_on_postgres() {
    let db = store::testing::postgres().await;
    let store = store::PgStore::connect(&db.url).await.expect("open");
    store.append(single("cart-x", ExpectedVersion::NoStream, 2)).await.unwrap();

    let mut in_flight = store.pool().begin().await.expect("begin");
    store
        .append_uncommitted(&mut in_flight, single("cart-x", ExpectedVersion::Exact(2), 1))
        .await
        .expect("an append in flight");
    let archiving = {
        let store = store.clone();
        tokio::spawn(async move { store.archive_stream("cart-x", ExpectedVersion::Any, ArchiveReason::Admin, "admin").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!archiving.is_finished(), "archiving waits for the append in flight");
    in_flight.commit().await.expect("commit");
    let outcome = archiving.await.unwrap().expect("archived");
    assert_eq!(
        (outcome.version, outcome.moved),
        (3, 3),
        "the append in flight was archived with the rest"
    );
    assert_archived(store.append(single("cart-x", ExpectedVersion::Exact(3), 1)).await, "cart-x", 3);

    // A writer that holds the table longer than the lock timeout: archiving gives up,
    // transiently. (The lock an insert takes, without an insert: a transaction that wrote
    // would hold back the feed horizon of every test running in this cluster meanwhile.)
    store.append(single("cart-y", ExpectedVersion::NoStream, 1)).await.unwrap();
    let mut stuck = store.pool().begin().await.expect("begin");
    sqlx::query("lock table events in row exclusive mode")
        .execute(&mut *stuck)
        .await
        .expect("an insert's lock");
    let started = std::time::Instant::now();
    let result = store.archive_stream("cart-y", ExpectedVersion::Any, ArchiveReason::Admin, "admin").await;
    assert!(matches!(&result, Err(e) if e.is_transient()), "{result:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    stuck.rollback().await.expect("rollback");
    assert!(store.archived_stream("cart-y").await.unwrap().is_none(), "nothing of it happened");
    assert_eq!(store.read_stream("cart-y", 1, 10).await.unwrap().len(), 1);
}

/// Postgres only: migration 0008 gives the streams archived or truncated before it their
/// marker at version 1 (the row version 1 had, at its negated position), so an append
/// expecting a new stream is refused for them as for every stream archived since.
#[tokio::test]
async fn markers_migration_marks_streams_archived_before_it_on_postgres() {
    let db = store::testing::postgres().await;
    let store = store::PgStore::connect(&db.url).await.expect("open");
    store.append(single("cart-old", ExpectedVersion::NoStream, 3)).await.unwrap();
    store
        .archive_stream("cart-old", ExpectedVersion::Any, ArchiveReason::Admin, "admin")
        .await
        .unwrap();
    store.append(single("product-old", ExpectedVersion::NoStream, 4)).await.unwrap();
    let snapshot = Snapshot {
        stream_id: "product-old".into(),
        state_schema_version: 1,
        version: 3,
        state: json!({}),
    };
    store.save_snapshot(&snapshot).await.unwrap();
    assert_eq!(store.truncate_stream("product-old", 3).await.unwrap(), 3);
    store.append(single("cart-live", ExpectedVersion::NoStream, 2)).await.unwrap();

    let markers = "select stream_id, version, -position from events where position < 0 order by stream_id";
    let archived_first = "select stream_id, 1::bigint, position from archived_events where version = 1 order by stream_id";
    let expected: Vec<(String, i64, i64)> = sqlx::query_as(archived_first).fetch_all(store.pool()).await.unwrap();
    assert_eq!(expected.len(), 2);
    assert_eq!(
        sqlx::query_as::<_, (String, i64, i64)>(markers).fetch_all(store.pool()).await.unwrap(),
        expected
    );

    // The marker is written twice, by archiving (`MOVE_SQL`) and by the migration: every
    // column the migration writes must be what archiving wrote.
    let whole_markers = "select row_to_json(e)::text from events e where position < 0 order by stream_id";
    let left_by_archiving: Vec<String> = sqlx::query_scalar(whole_markers).fetch_all(store.pool()).await.unwrap();

    // As the database was before 0008: no markers. The migration puts them back, once.
    sqlx::query("delete from events where position < 0").execute(store.pool()).await.unwrap();
    let migration = include_str!("../../../migrations/postgres/0008_archive_markers.sql");
    for _ in 0..2 {
        sqlx::raw_sql(migration).execute(store.pool()).await.expect("migration 0008");
        assert_eq!(
            sqlx::query_as::<_, (String, i64, i64)>(markers).fetch_all(store.pool()).await.unwrap(),
            expected
        );
        let written: Vec<String> = sqlx::query_scalar(whole_markers).fetch_all(store.pool()).await.unwrap();
        assert_eq!(written, left_by_archiving, "the migration's markers are archiving's markers");
    }
    assert_archived(store.append(single("cart-old", ExpectedVersion::NoStream, 1)).await, "cart-old", 3);
    assert!(matches!(
        store.append(single("product-old", ExpectedVersion::NoStream, 1)).await,
        Err(StoreError::Conflict { actual: 4, .. })
    ));
    assert_eq!(store.read_stream("product-old", 1, 100).await.unwrap().len(), 4);
    assert_eq!(store.load_stream("cart-live", 1, 100).await.unwrap().len(), 2);
}

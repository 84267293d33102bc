//! What only the SQLite backend promises (the shared behaviour is in `contract`): the file
//! is made on first use, acknowledged appends survive a crash, one writer at a time means
//! no SQLITE_BUSY under load, and the feed stays gap-free while subscribers tail it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use store::sqlite::SqliteStoreOptions;
use store::{
    AppendRequest, ArchiveReason, EventStore, ExpectedVersion, LiveFeed, Metadata, NewEvent, Position, RecordedEvent, SqliteStore, StoreError,
};

fn events(kind: &str, count: u64) -> Vec<NewEvent> {
    (1..=count)
        .map(|n| {
            NewEvent::new(
                kind,
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
    AppendRequest::single(stream, expected, events("Something", count))
}

async fn open(url: &str) -> SqliteStore {
    SqliteStore::connect(url).await.unwrap_or_else(|e| panic!("open {url}: {e:?}"))
}

/// A path that does not exist yet, inside a directory removed when the tests end.
fn temp_dir() -> PathBuf {
    store::testing::temp_dir("cartsource-sqlite-test").join("store")
}

fn assert_gap_free_feed(feed: &[RecordedEvent]) {
    assert!(feed.windows(2).all(|w| w[0].position < w[1].position), "positions strictly increase");
    assert!(
        feed.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at),
        "recorded_at never decreases with position"
    );
    let mut versions: HashMap<&str, Vec<u64>> = HashMap::new();
    for event in feed {
        versions.entry(&event.stream_id).or_default().push(event.version);
    }
    for (stream, versions) in versions {
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "versions of {stream} are 1, 2, 3, ... in feed order"
        );
    }
}

#[tokio::test]
async fn connect_creates_the_file_and_its_parent_directories() {
    let dir = temp_dir();
    let file = dir.join("nested").join("deeper").join("events.db");
    assert!(!dir.exists());
    // No `mode=rwc`: creating a missing file is the store's default.
    let store = open(&format!("sqlite:{}", file.display())).await;
    assert!(file.is_file(), "{} was created", file.display());
    store.append(single("cart-1", ExpectedVersion::NoStream, 1)).await.unwrap();
    assert_eq!(store.stream_version("cart-1").await.unwrap(), 1);
}

#[tokio::test]
async fn connections_are_durable_and_readers_cannot_write() {
    let store = open(&store::testing::sqlite()).await;
    let writer = &store.pool().writer;
    let journal: String = sqlx::query_scalar("pragma journal_mode").fetch_one(writer).await.unwrap();
    assert_eq!(journal, "wal");
    let synchronous: i64 = sqlx::query_scalar("pragma synchronous").fetch_one(writer).await.unwrap();
    assert_eq!(synchronous, 2, "synchronous = FULL: a commit is on disk before it is acknowledged");
    let foreign_keys: i64 = sqlx::query_scalar("pragma foreign_keys").fetch_one(writer).await.unwrap();
    assert_eq!(foreign_keys, 1);
    let busy_timeout: i64 = sqlx::query_scalar("pragma busy_timeout").fetch_one(writer).await.unwrap();
    assert_eq!(busy_timeout, 5000);
    assert_eq!(writer.options().get_max_connections(), 1, "one writer");

    let reader = &store.pool().reader;
    assert!(reader.options().get_max_connections() > 1, "several readers");
    let synchronous: i64 = sqlx::query_scalar("pragma synchronous").fetch_one(reader).await.unwrap();
    assert_eq!(synchronous, 2);
    let written = sqlx::query("insert into snapshots (stream_id, state_schema_version, version, state) values ('x', 1, 1, '{}')")
        .execute(reader)
        .await;
    assert!(written.is_err(), "the reader pool is query_only");
}

#[tokio::test]
async fn in_memory_databases_are_refused_with_advice() {
    for url in ["sqlite::memory:", "sqlite://events.db?mode=memory"] {
        match SqliteStore::connect(url).await {
            Err(StoreError::InvalidRequest(message)) => assert!(message.contains("use a file"), "{message}"),
            Err(other) => panic!("{url}: expected InvalidRequest, got {other:?}"),
            Ok(_) => panic!("{url}: expected InvalidRequest, got a store"),
        }
    }
}

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let url = store::testing::sqlite();
    let store = open(&url).await;
    let key = store::IdempotencyKey {
        actor: "alice".into(),
        key: "k".into(),
        fingerprint: "fp".into(),
    };
    let first = store
        .append(single("cart-r", ExpectedVersion::NoStream, 3).with_idempotency(key.clone()))
        .await
        .unwrap();
    store.append(single("order-r", ExpectedVersion::NoStream, 2)).await.unwrap();
    let snapshot = store::Snapshot {
        stream_id: "cart-r".into(),
        state_schema_version: 1,
        version: 3,
        state: json!({"lines": 3}),
    };
    store.save_snapshot(&snapshot).await.unwrap();
    let before = store.read_all(Position::START, 1000, None).await.unwrap();
    store.close().await;
    drop(store);

    let reopened = open(&url).await;
    assert_eq!(
        reopened.read_all(Position::START, 1000, None).await.unwrap(),
        before,
        "every field, recorded_at to the microsecond"
    );
    assert_eq!(reopened.load_snapshot("cart-r", 1).await.unwrap(), Some(snapshot));
    let replay = reopened
        .append(single("cart-r", ExpectedVersion::NoStream, 3).with_idempotency(key))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.positions, first.positions);

    let next = reopened.append(single("cart-r", ExpectedVersion::Exact(3), 1)).await.unwrap();
    assert_eq!(next.streams[0].first_version, 4);
    assert!(next.positions[0] > before.last().unwrap().position, "positions continue after a restart");
}

const ABORT_CHILD: &str = "CARTSOURCE_SQLITE_ABORT_CHILD_URL";
const ACKS_BEFORE_ABORT: u64 = 200;

/// The child half of the crash test: appends until killed, printing each acknowledgement.
async fn append_until_aborted(url: &str) -> ! {
    let store = open(url).await;
    let mut out = std::io::stdout();
    let mut version = 0;
    loop {
        let request = single("cart-crash", ExpectedVersion::Exact(version), 1);
        let event_id = request.streams[0].events[0].event_id;
        match store.append(request).await {
            Ok(outcome) => {
                version = outcome.streams[0].last_version;
                let _ = writeln!(out, "acked {version} {event_id}");
                let _ = out.flush();
            }
            Err(e) => {
                let _ = writeln!(out, "failed {e:?}");
                std::process::exit(3);
            }
        }
        if version == ACKS_BEFORE_ABORT {
            // Die from another thread while this one keeps writing: likely mid-transaction.
            std::thread::spawn(|| std::process::abort());
        }
    }
}

/// A process that dies without closing anything (no checkpoint, no clean shutdown, maybe in
/// the middle of a transaction) loses no acknowledged append, and leaves a readable file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_a_process_abort() {
    if let Ok(url) = std::env::var(ABORT_CHILD) {
        append_until_aborted(&url).await;
    }
    let url = store::testing::sqlite();
    let exe = std::env::current_exe().expect("test binary path");
    // The harness names a test by its path below the crate root (`sqlite::...`).
    let module = module_path!().split_once("::").map_or("", |(_, module)| module);
    let this_test = format!("{module}::acknowledged_appends_survive_a_process_abort");
    let output = std::process::Command::new(exe)
        .args(["--exact", this_test.as_str(), "--nocapture", "--test-threads=1"])
        .env(ABORT_CHILD, &url)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run the child");
    assert!(!output.status.success(), "the child was aborted");
    let acked: Vec<(u64, uuid::Uuid)> = output
        .stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            // The harness may print "test <name> ... " before the first line: search.
            let mut parts = line[line.find("acked ")? + "acked ".len()..].split(' ');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect();
    assert!(acked.len() as u64 >= ACKS_BEFORE_ABORT, "the child acknowledged {} appends", acked.len());

    let store = open(&url).await;
    let stored = store.read_stream("cart-crash", 1, 100_000).await.unwrap();
    let stored_ids: HashMap<u64, uuid::Uuid> = stored.iter().map(|e| (e.version, e.event_id)).collect();
    for (version, event_id) in &acked {
        assert_eq!(stored_ids.get(version), Some(event_id), "acknowledged version {version} is stored");
    }
    assert!(stored.len() <= acked.len() + 1, "at most the one unacknowledged append in flight");
    assert_gap_free_feed(&store.read_all(Position::START, 100_000, None).await.unwrap());
    store
        .append(single("cart-crash", ExpectedVersion::Exact(stored.len() as u64), 1))
        .await
        .expect("the file is writable after recovery");
}

/// 16 tasks x 100 appends, half to their own stream with exact expectations and half to a
/// shared stream with `Any`: all succeed (no SQLITE_BUSY, no conflict), no gap anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_serialise_without_busy_errors() {
    let store = Arc::new(open(&store::testing::sqlite()).await);
    let tasks = (0..16).map(|task| {
        let store = store.clone();
        tokio::spawn(async move {
            let own = format!("cart-{task}");
            let mut version = 0;
            for i in 0..100 {
                let result = if i % 2 == 0 {
                    store.append(single(&own, ExpectedVersion::Exact(version), 1)).await
                } else {
                    store.append(single("order-shared", ExpectedVersion::Any, 1)).await
                };
                match result {
                    Ok(outcome) if i % 2 == 0 => version = outcome.streams[0].last_version,
                    Ok(_) => {}
                    Err(e) => panic!("task {task}, append {i}: {e:?}"),
                }
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("task");
    }
    let feed = store.read_all(Position::START, 100_000, None).await.unwrap();
    assert_eq!(feed.len(), 1600);
    assert_gap_free_feed(&feed);
    assert_eq!(store.stream_version("order-shared").await.unwrap(), 800);
    for task in 0..16 {
        assert_eq!(store.stream_version(&format!("cart-{task}")).await.unwrap(), 50);
    }
    assert_eq!(store.head_position().await.unwrap(), feed[1599].position);
}

/// A subscriber tailing the feed while 8 writers append (single and multi-stream, some
/// rejected) sees every committed event exactly once, in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriber_sees_every_event_once_in_order_under_concurrent_writers() {
    let store: Arc<dyn EventStore> = Arc::new(open(&store::testing::sqlite()).await);
    let live = LiveFeed::start(store.clone());
    let mut subscription = live.all(Position::START, None);
    let writers = (0..8).map(|writer| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut written = 0;
            for i in 0..60u64 {
                let request = match i % 3 {
                    0 => single(&format!("cart-{writer}"), ExpectedVersion::Any, 1),
                    1 => single(&format!("order-{writer}"), ExpectedVersion::Any, 1).with_stream(
                        format!("product-{writer}"),
                        ExpectedVersion::Any,
                        events("StockReserved", 2),
                    ),
                    // Always stale: rejected, writes nothing, must leave no hole.
                    _ => single(&format!("cart-{writer}"), ExpectedVersion::Exact(10_000), 1),
                };
                match store.append(request).await {
                    Ok(outcome) => written += outcome.positions.len(),
                    Err(StoreError::Conflict { .. }) if i % 3 == 2 => {}
                    Err(e) => panic!("writer {writer}: {e:?}"),
                }
            }
            written
        })
    });
    let written: usize = futures::future::join_all(writers).await.into_iter().map(|w| w.expect("writer")).sum();
    assert_eq!(written, 8 * 20 * 4);

    let mut received = Vec::with_capacity(written);
    while received.len() < written {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("an event within 10 s")
            .expect("open subscription")
            .expect("no error");
        received.push(Arc::unwrap_or_clone(event));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(700), subscription.next()).await.is_err(),
        "nothing beyond what was written"
    );
    let ids: HashSet<_> = received.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), written, "no duplicate");
    assert_eq!(
        received,
        store.read_all(Position::START, 100_000, None).await.unwrap(),
        "the subscriber saw exactly the feed"
    );
    assert_gap_free_feed(&received);
}

/// The version index named in the contract exists and is what SQLite reports with its
/// extended code 2067; an event id stored twice is the caller's error, not a conflict.
#[tokio::test]
async fn unique_violations_are_told_apart_by_code_and_data() {
    let store = open(&store::testing::sqlite()).await;
    let index: Option<String> = sqlx::query_scalar("select sql from sqlite_master where type = 'index' and name = 'events_stream_version_key'")
        .fetch_optional(&store.pool().reader)
        .await
        .unwrap();
    assert!(
        index.unwrap_or_default().to_lowercase().contains("unique"),
        "events_stream_version_key is a unique index"
    );

    store.append(single("cart-u", ExpectedVersion::NoStream, 1)).await.unwrap();
    let duplicate = sqlx::query(
        "insert into events (event_id, stream_id, category, version, event_type, schema_version, data, metadata) \
         values ('00000000-0000-0000-0000-000000000001', 'cart-u', 'cart', 1, 'X', 1, '{}', '{}')",
    )
    .execute(&store.pool().writer)
    .await;
    match duplicate {
        Err(sqlx::Error::Database(db)) => assert_eq!(db.code().as_deref(), Some("2067")),
        other => panic!("expected a unique violation, got {other:?}"),
    }

    let reused = events("Again", 1);
    store
        .append(AppendRequest::single("cart-v", ExpectedVersion::NoStream, reused.clone()))
        .await
        .unwrap();
    let request =
        AppendRequest::single("cart-w", ExpectedVersion::NoStream, events("Fresh", 2)).with_stream("cart-x", ExpectedVersion::NoStream, reused);
    let result = store.append(request).await;
    assert!(
        matches!(&result, Err(StoreError::InvalidRequest(m)) if m.contains("already stored")),
        "{result:?}"
    );
    assert_eq!(store.stream_version("cart-w").await.unwrap(), 0, "nothing of the call was written");
    assert_eq!(store.read_all(Position::START, 100, None).await.unwrap().len(), 2);
}

/// `recorded_at` is stored in one fixed-width UTC form with microseconds, so SQL can compare
/// it as text (time travel), and it round-trips exactly.
#[tokio::test]
async fn recorded_at_is_fixed_width_utc_text_that_round_trips() {
    let store = open(&store::testing::sqlite()).await;
    store.append(single("cart-t", ExpectedVersion::NoStream, 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.append(single("cart-t", ExpectedVersion::Exact(1), 1)).await.unwrap();
    let read = store.read_stream("cart-t", 1, 10).await.unwrap();
    let raw: Vec<String> = sqlx::query_scalar("select recorded_at from events order by position")
        .fetch_all(&store.pool().reader)
        .await
        .unwrap();
    for (text, event) in raw.iter().zip(&read) {
        assert_eq!(text.len(), "2026-01-02T03:04:05.123456Z".len(), "{text}");
        assert!(
            text.ends_with('Z') && text.as_bytes()[10] == b'T' && text.as_bytes()[19] == b'.',
            "{text}"
        );
        let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(parsed, event.recorded_at);
        assert_eq!(event.recorded_at.offset(), time::UtcOffset::UTC);
    }
    assert!(
        read[1].recorded_at - read[0].recorded_at >= time::Duration::milliseconds(20),
        "sub-second precision"
    );

    // "The cart as it was at t": a text comparison in SQL picks exactly the earlier event.
    let between = read[0].recorded_at + time::Duration::milliseconds(10);
    let between = between
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("select version from events where recorded_at <= ?1 order by position")
        .bind(between)
        .fetch_all(&store.pool().reader)
        .await
        .unwrap();
    assert_eq!(versions, vec![1]);
}

/// Even when the clock steps back (here: a stored event from the future), recorded_at never
/// decreases with position: not in appends, and not in the archive log's event either.
#[tokio::test]
async fn recorded_at_never_decreases_when_the_clock_steps_back() {
    let store = open(&store::testing::sqlite()).await;
    sqlx::query(
        "insert into events (event_id, stream_id, category, version, event_type, schema_version, data, metadata, recorded_at) \
         values ('00000000-0000-0000-0000-000000000002', 'cart-f', 'cart', 1, 'X', 1, '{}', '{}', '2999-01-01T00:00:00.000001Z')",
    )
    .execute(&store.pool().writer)
    .await
    .unwrap();
    store.append(single("cart-f", ExpectedVersion::Exact(1), 2)).await.unwrap();
    let read = store.read_stream("cart-f", 1, 10).await.unwrap();
    assert_eq!(read.len(), 3);
    assert!(
        read.iter().all(|e| e.recorded_at == read[0].recorded_at),
        "held at the latest time seen: {read:?}"
    );
    store
        .archive_stream("cart-f", ExpectedVersion::Exact(3), ArchiveReason::Admin, "tester")
        .await
        .unwrap();
    let feed = store.read_all(Position::START, 10, None).await.unwrap();
    assert_eq!(feed.len(), 4, "the stream's three events and the archive log's one: {feed:?}");
    assert_gap_free_feed(&feed);
    assert_eq!(feed[3].recorded_at, read[0].recorded_at, "the archive log's event is held too");
}

#[tokio::test]
async fn options_size_the_reader_pool() {
    let options = SqliteStoreOptions {
        read_connections: 2,
        ..Default::default()
    };
    let store = SqliteStore::connect_with(&store::testing::sqlite(), options).await.unwrap();
    assert_eq!(store.pool().reader.options().get_max_connections(), 2);
    assert_eq!(store.pool().writer.options().get_max_connections(), 1);
}

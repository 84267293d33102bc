//! Postgres-only behaviour: the gap-free feed under interleaved and concurrent
//! transactions, LISTEN/NOTIFY across stores and after a killed listener, and the mapping
//! of unique violations. The backend-agnostic contract is in `contract` (run by `backends`).
//! Needs PostgreSQL: `DATABASE_URL=postgres://user@host/db` (see `store::testing`).
//!
//! One file (about 500 lines): what only Postgres does, beside the helpers these tests share.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use store::postgres::{is_unique_violation, PgStoreOptions, CHANNEL, LISTENER_APPLICATION_NAME, NOTIFIER_APPLICATION_NAME};
use store::{AppendRequest, EventStore, ExpectedVersion, LiveFeed, Metadata, NewEvent, PgStore, Position, Resume, StoreError};
use uuid::Uuid;

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "Tested",
        1,
        json!({ "n": n }),
        Metadata {
            actor: "tester".into(),
            ..Default::default()
        },
    )
}

fn events(count: u64) -> Vec<NewEvent> {
    (1..=count).map(event).collect()
}

fn ids(events: &[store::RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

async fn fresh_store(options: PgStoreOptions) -> (PgStore, String) {
    let db = store::testing::postgres().await;
    let store = PgStore::connect_with(&db.url, options)
        .await
        .unwrap_or_else(|e| panic!("open store: {e:?}"));
    (store, db.url)
}

/// The interleaving that loses events with a sequence-based position: transaction A takes
/// its position first, B takes a later one and commits first. A reader must not return B's
/// event before A's is decided, and after A commits it reads A's then B's, skipping nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_holds_back_later_commits_until_earlier_transactions_end() {
    let feed_wait = Duration::from_millis(300);
    let (store, url) = fresh_store(PgStoreOptions {
        feed_wait,
        ..Default::default()
    })
    .await;
    // A second store on the same database knows nothing of B's commit, so it does not wait.
    let other_reader = PgStore::connect(&url).await.expect("second store");

    let a_events = events(1);
    let mut a = store.pool().begin().await.expect("begin A");
    let a_outcome = store
        .append_uncommitted(&mut a, AppendRequest::single("cart-a", ExpectedVersion::NoStream, a_events.clone()))
        .await
        .expect("append in A");

    let b_events = events(1);
    let b_outcome = store
        .append(AppendRequest::single("cart-b", ExpectedVersion::NoStream, b_events.clone()))
        .await
        .expect("append B");
    assert!(
        a_outcome.positions[0] < b_outcome.positions[0],
        "A's position precedes B's: {a_outcome:?} {b_outcome:?}"
    );

    // B is committed, but A, which precedes it, is still open: neither may be returned.
    let started = tokio::time::Instant::now();
    assert!(
        store.read_all(Position::START, 100, None).await.expect("read").is_empty(),
        "B must not be returned while A is open"
    );
    assert!(started.elapsed() >= feed_wait, "the store waited for its own commit before giving up");
    assert!(started.elapsed() < feed_wait * 10, "the wait is bounded");
    assert!(other_reader.read_all(Position::START, 100, None).await.expect("read").is_empty());
    assert_eq!(other_reader.head_position().await.expect("head"), Position::START);
    assert_eq!(
        store.read_stream("cart-b", 1, 10).await.expect("stream").len(),
        1,
        "B's stream itself is readable"
    );

    a.commit().await.expect("commit A");
    store.notify_committed(a_outcome.last_position());

    let feed = other_reader.read_all(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&feed), vec![a_events[0].event_id, b_events[0].event_id], "A's event, then B's");
    assert!(feed[0].position < feed[1].position);
    assert_eq!(other_reader.head_position().await.expect("head"), b_outcome.positions[0]);
    // A reader that had checkpointed nothing past A finds nothing new after B.
    assert!(store.read_all(b_outcome.positions[0], 100, None).await.expect("read").is_empty());
}

/// 16 writers, ~2,200 events, appends of every shape, some rolled back and some committed
/// late out of order, while a subscriber tails the feed: it sees every committed event
/// exactly once, in strictly increasing position, and nothing rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_a_tailing_reader_agree_exactly() {
    const WRITERS: u64 = 16;
    const ROUNDS: u64 = 70;
    let (store, _) = fresh_store(PgStoreOptions {
        max_connections: 24,
        ..Default::default()
    })
    .await;
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let live = LiveFeed::start(shared.clone());

    let committed = Arc::new(Mutex::new(HashSet::<Uuid>::new()));
    let rolled_back = Arc::new(Mutex::new(HashSet::<Uuid>::new()));

    // The tailing reader checks order and uniqueness as it goes. On a loaded machine it may
    // fall more than its buffer behind: then, as documented, it subscribes again from the
    // resume point the feed gives, and must still see every event once and in order.
    let seen = Arc::new(Mutex::new(Vec::<(Position, Uuid)>::new()));
    let reader = {
        let seen = seen.clone();
        let live = live.clone();
        let mut feed = live.all(Position::START, None);
        tokio::spawn(async move {
            let mut unique = HashSet::new();
            while let Some(event) = feed.next().await {
                let event = match event {
                    Err(StoreError::SubscriberTooSlow {
                        resume: Resume::AfterPosition(after),
                    }) => {
                        feed = live.all(after, None);
                        continue;
                    }
                    other => other.expect("subscription error"),
                };
                let mut seen = seen.lock().expect("lock");
                if let Some((last, _)) = seen.last() {
                    assert!(event.position > *last, "positions strictly increase: {} after {last}", event.position);
                }
                assert!(unique.insert(event.event_id), "event {} delivered twice", event.event_id);
                seen.push((event.position, event.event_id));
            }
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let committed = committed.clone();
            let rolled_back = rolled_back.clone();
            tokio::spawn(async move {
                let record = |set: &Mutex<HashSet<Uuid>>, events: &[NewEvent]| set.lock().expect("lock").extend(events.iter().map(|e| e.event_id));
                for round in 0..ROUNDS {
                    let own = format!("cart-w{w}-{round}");
                    let hot = format!("order-hot{}", round % 4);
                    match round % 7 {
                        0 => {
                            let batch = events(1);
                            store
                                .append(AppendRequest::single(&own, ExpectedVersion::NoStream, batch.clone()))
                                .await
                                .expect("single");
                            record(&committed, &batch);
                        }
                        1 => {
                            let batch = events(5);
                            store
                                .append(AppendRequest::single(&hot, ExpectedVersion::Any, batch.clone()))
                                .await
                                .expect("any on a hot stream");
                            record(&committed, &batch);
                        }
                        2 => {
                            let (one, two) = (events(2), events(2));
                            let request = AppendRequest::single(&own, ExpectedVersion::NoStream, one.clone()).with_stream(
                                &hot,
                                ExpectedVersion::Any,
                                two.clone(),
                            );
                            store.append(request).await.expect("multi-stream");
                            record(&committed, &one);
                            record(&committed, &two);
                        }
                        3 => {
                            // A stale expectation: rejected, nothing written.
                            let batch = events(2);
                            let result = store
                                .append(AppendRequest::single(&hot, ExpectedVersion::Exact(1_000_000), batch.clone()))
                                .await;
                            assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
                            record(&rolled_back, &batch);
                        }
                        4 => {
                            // Inserted, then rolled back: its positions stay unused.
                            let batch = events(3);
                            let mut tx = store.pool().begin().await.expect("begin");
                            store
                                .append_uncommitted(&mut tx, AppendRequest::single(&own, ExpectedVersion::Any, batch.clone()))
                                .await
                                .expect("append in tx");
                            tokio::time::sleep(Duration::from_millis(round % 5)).await;
                            tx.rollback().await.expect("rollback");
                            record(&rolled_back, &batch);
                        }
                        5 => {
                            // Takes its positions, then commits late: later transactions commit first.
                            let batch = events(2);
                            let mut tx = store.pool().begin().await.expect("begin");
                            let outcome = store
                                .append_uncommitted(&mut tx, AppendRequest::single(&own, ExpectedVersion::NoStream, batch.clone()))
                                .await
                                .expect("append in tx");
                            tokio::time::sleep(Duration::from_millis(5 + round % 10)).await;
                            tx.commit().await.expect("commit");
                            record(&committed, &batch);
                            store.notify_committed(outcome.last_position());
                        }
                        _ => {
                            let batch = events(1);
                            store
                                .append(AppendRequest::single(&own, ExpectedVersion::Any, batch.clone()))
                                .await
                                .expect("single any");
                            record(&committed, &batch);
                        }
                    }
                }
            })
        })
        .collect();

    let written = tokio::time::timeout(Duration::from_secs(60), async {
        for writer in writers {
            writer.await.expect("writer panicked");
        }
    })
    .await;
    assert!(written.is_ok(), "the writers did not finish within 60 s");
    // Everything is committed: the reader, which polls at least every 500 ms, must catch up
    // promptly. A skipped event would leave it short for ever, so fail after 10 s.
    let expected = committed.lock().expect("lock").len();
    let caught_up = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.lock().expect("lock").len() < expected && !reader.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if reader.is_finished() {
        reader.await.expect("the reader failed");
        panic!("the subscription ended early");
    }
    let delivered = seen.lock().expect("lock").len();
    assert!(
        caught_up.is_ok(),
        "the reader stalled at {delivered} of {expected} committed events: it skipped some"
    );
    let committed = committed.lock().expect("lock").clone();

    // Nothing more arrives than was committed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    reader.abort();
    let seen: Vec<(Position, Uuid)> = seen.lock().expect("lock").clone();
    let seen_ids: HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert!(committed.len() >= 2_000, "only {} events committed", committed.len());
    assert_eq!(seen.len(), seen_ids.len(), "no duplicate");
    let missing = committed.difference(&seen_ids).count();
    let extra = seen_ids.difference(&committed).count();
    assert_eq!((missing, extra), (0, 0), "the reader saw exactly the committed events");
    let rolled_back = rolled_back.lock().expect("lock").clone();
    assert!(
        rolled_back.len() > 100 && rolled_back.is_disjoint(&seen_ids),
        "rolled-back events are never seen"
    );
    // The feed read afterwards is the same sequence.
    let feed = shared.read_all(Position::START, 100_000, None).await.expect("read_all");
    assert_eq!(feed.iter().map(|e| (e.position, e.event_id)).collect::<Vec<_>>(), seen);
}

/// Stops a subscription after `count` events or fails after `timeout`.
async fn take_events(
    stream: &mut futures::stream::BoxStream<'static, Result<std::sync::Arc<store::RecordedEvent>, StoreError>>,
    count: usize,
    timeout: Duration,
) -> Vec<store::RecordedEvent> {
    let mut taken = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + timeout;
    while taken.len() < count {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => taken.push(std::sync::Arc::unwrap_or_clone(event)),
            Ok(Some(Err(e))) => panic!("subscription error: {e:?}"),
            Ok(None) => panic!("subscription ended"),
            Err(_) => panic!("only {} of {count} events within {timeout:?}", taken.len()),
        }
    }
    taken
}

/// Reads `state` every 20 ms until `done` holds for it; fails after 10 s, saying `what` and
/// the last state read.
async fn eventually<T: std::fmt::Debug>(what: &str, mut state: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = state().await;
        if done(&now) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (5 s at most) for `doorbell` to ring; `whose` names it in the failure.
async fn rang(doorbell: &mut tokio::sync::watch::Receiver<u64>, whose: &str) {
    tokio::time::timeout(Duration::from_secs(5), doorbell.changed())
        .await
        .unwrap_or_else(|_| panic!("the doorbell ({whose}) did not ring"))
        .expect("doorbell open");
}

async fn listener_pids(conn: &mut PgConnection) -> Vec<i32> {
    session_pids(conn, LISTENER_APPLICATION_NAME).await
}

async fn session_pids(conn: &mut PgConnection, application_name: &str) -> Vec<i32> {
    sqlx::query_scalar("select pid from pg_stat_activity where application_name = $1 and datname = current_database() order by pid")
        .bind(application_name)
        .fetch_all(conn)
        .await
        .expect("pg_stat_activity")
}

/// Reads run on connections the store keeps open between them (`connections.rs`): when the
/// server ends those sessions (a restart, an operator), each kept connection fails one read
/// with a transient error and is dropped, and reads go on on fresh ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_after_the_stores_sessions_were_killed() {
    let (_db, mut admin, store) = store_with_three_events("cart-k").await;
    assert_eq!(feed_len(&store, 3).await, 3);

    let pids = store_sessions(&mut admin).await;
    assert!(!pids.is_empty(), "the store keeps connections open between reads");
    let killed: Vec<bool> = sqlx::query_scalar("select pg_terminate_backend(pid) from unnest($1::int4[]) pid")
        .bind(&pids)
        .fetch_all(&mut admin)
        .await
        .expect("terminate");
    assert!(killed.iter().all(|k| *k));
    let left = async || -> Vec<i32> {
        sqlx::query_scalar("select pid from pg_stat_activity where pid = any($1)")
            .bind(&pids)
            .fetch_all(&mut admin)
            .await
            .expect("sessions")
    };
    eventually("killed sessions still there", left, Vec::is_empty).await;

    // At most one failure per killed session, each transient; then the reads answer.
    let mut failures = 0;
    for _ in 0..=pids.len() {
        match store.read_stream("cart-k", 1, 10).await {
            Ok(page) => {
                assert_eq!(page.len(), 3);
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "a read on a killed session: {e:?}");
                failures += 1;
            }
        }
    }
    assert!(failures <= pids.len(), "{failures} failed reads for {} killed sessions", pids.len());
    for _ in 0..3 {
        assert_eq!(feed_len(&store, 3).await, 3);
        assert_eq!(store.read_stream("cart-k", 1, 10).await.expect("stream after recovery").len(), 3);
    }
}

/// How many events the feed's first page holds once it holds `expected` (or after 10 s). A
/// page may stop short for a while (an open transaction anywhere in the cluster, another
/// test's, holds the horizon back), but every read must succeed.
async fn feed_len(store: &PgStore, expected: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = store.read_all(Position(0), 10, None).await.expect("feed").len();
        if read >= expected || tokio::time::Instant::now() >= deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A read whose caller goes away mid-statement (a timeout, a client that hung up) leaves
/// its connection to be drained and kept, as the pool would: the next read runs on the
/// same server session instead of opening a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_read_keeps_its_connection() {
    let (db, mut admin, store) = store_with_three_events("cart-c").await;
    let before = store_sessions(&mut admin).await;

    // The read waits behind a lock until its caller gives up on it.
    let mut locker = PgConnection::connect(&db.url).await.expect("locker connection");
    sqlx::raw_sql("begin; lock table events in access exclusive mode")
        .execute(&mut locker)
        .await
        .expect("lock");
    let waited = tokio::time::timeout(Duration::from_millis(300), store.read_stream("cart-c", 1, 10)).await;
    assert!(waited.is_err(), "the read should still wait behind the lock: {waited:?}");
    sqlx::raw_sql("rollback").execute(&mut locker).await.expect("unlock");
    locker.close().await.expect("close the locker");
    // Its statement ends once the lock is gone; then the connection is idle again.
    let busy = async || -> i64 {
        sqlx::query_scalar("select count(*) from pg_stat_activity where pid = any($1) and state <> 'idle'")
            .bind(&before)
            .fetch_one(&mut admin)
            .await
            .expect("states")
    };
    eventually("the cancelled read's statement did not end", busy, |busy| *busy == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    for _ in 0..3 {
        assert_eq!(store.read_stream("cart-c", 1, 10).await.expect("read after").len(), 3);
    }
    assert_eq!(
        store_sessions(&mut admin).await,
        before,
        "the reads after the cancelled one ran on the same sessions"
    );
}

/// A fresh store holding `stream` with three events (read back once), and an admin
/// connection to its database.
async fn store_with_three_events(stream: &str) -> (store::testing::TestPostgres, PgConnection, PgStore) {
    let db = store::testing::postgres().await;
    let admin = PgConnection::connect(&db.url).await.expect("admin connection");
    let store = PgStore::connect(&db.url).await.expect("store");
    store
        .append(AppendRequest::single(stream, ExpectedVersion::NoStream, events(3)))
        .await
        .expect("append");
    assert_eq!(store.read_stream(stream, 1, 10).await.expect("read").len(), 3);
    (db, admin, store)
}

/// The sessions of the database but the caller's and the store's listener and notifier.
async fn store_sessions(admin: &mut PgConnection) -> Vec<i32> {
    sqlx::query_scalar(
        "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()
            and application_name not in ($1, $2) order by pid",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .bind(NOTIFIER_APPLICATION_NAME)
    .fetch_all(admin)
    .await
    .expect("sessions")
}

/// A subscriber on store X hears commits made through store Y (another pool, as another
/// process would), and still does after X's listener connection is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_hear_other_pools_and_survive_a_killed_listener() {
    let db = store::testing::postgres().await;
    let mut admin = PgConnection::connect(&db.url).await.expect("admin connection");
    let x = PgStore::connect(&db.url).await.expect("store X");
    let x_listeners = listener_pids(&mut admin).await;
    assert_eq!(x_listeners.len(), 1, "X listens on a connection of its own: {x_listeners:?}");
    let y = PgStore::connect(&db.url).await.expect("store Y");

    let x_shared: Arc<dyn EventStore> = Arc::new(x.clone());
    let mut doorbell = x.doorbell();
    let live = LiveFeed::start(x_shared);
    let mut feed = live.all(Position::START, None);

    doorbell.borrow_and_update();
    let first = events(3);
    y.append(AppendRequest::single("cart-y", ExpectedVersion::NoStream, first.clone()))
        .await
        .expect("append via Y");
    rang(&mut doorbell, "X's, for Y's commit").await;
    let got = take_events(&mut feed, 3, Duration::from_secs(10)).await;
    assert_eq!(ids(&got), first.iter().map(|e| e.event_id).collect::<Vec<_>>());

    // Kill X's listener connection.
    let killed: Vec<bool> = sqlx::query_scalar("select pg_terminate_backend(pid) from unnest($1::int4[]) pid")
        .bind(&x_listeners)
        .fetch_all(&mut admin)
        .await
        .expect("terminate");
    assert_eq!(killed, vec![true]);

    // X listens again on a new connection (its listener reconnects by itself).
    eventually(
        "X's listener did not reconnect",
        async || listener_pids(&mut admin).await,
        |now| now.len() == 2 && !now.contains(&x_listeners[0]),
    )
    .await;

    doorbell.borrow_and_update();
    let second = events(4);
    y.append(AppendRequest::single("cart-y", ExpectedVersion::Exact(3), second.clone()))
        .await
        .expect("append via Y");
    rang(&mut doorbell, "X's, after the reconnect").await;
    let got = take_events(&mut feed, 4, Duration::from_secs(10)).await;
    assert_eq!(ids(&got), second.iter().map(|e| e.event_id).collect::<Vec<_>>());
}

/// The notifier keeps one connection of its own; when the server ends that session, the
/// next commit's NOTIFY goes out on a fresh one, and other stores still hear it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_announced_after_the_notifier_session_was_killed() {
    let db = store::testing::postgres().await;
    let mut admin = PgConnection::connect(&db.url).await.expect("admin connection");
    let x = PgStore::connect(&db.url).await.expect("store X");
    let y = PgStore::connect(&db.url).await.expect("store Y");
    let mut doorbell = x.doorbell();

    doorbell.borrow_and_update();
    y.append(AppendRequest::single("cart-n", ExpectedVersion::NoStream, events(1)))
        .await
        .expect("append via Y");
    rang(&mut doorbell, "X's, for Y's first commit").await;
    // Only Y has appended, so only Y's notifier has a session.
    let notifiers = session_pids(&mut admin, NOTIFIER_APPLICATION_NAME).await;
    assert_eq!(notifiers.len(), 1, "one notifier session: {notifiers:?}");
    let killed: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(notifiers[0])
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);
    eventually(
        "the killed notifier session is still there",
        async || session_pids(&mut admin, NOTIFIER_APPLICATION_NAME).await,
        |now| !now.contains(&notifiers[0]),
    )
    .await;

    doorbell.borrow_and_update();
    y.append(AppendRequest::single("cart-n", ExpectedVersion::Exact(1), events(1)))
        .await
        .expect("append via Y");
    rang(&mut doorbell, "X's, for Y's commit after its notifier session was killed").await;
    let now = session_pids(&mut admin, NOTIFIER_APPLICATION_NAME).await;
    assert!(now.len() == 1 && now[0] != notifiers[0], "a fresh notifier session: {now:?}");
}

/// A store that no other process listens to sends no NOTIFY (nobody would hear it but its
/// own listener); once another store listens, its commits are announced again. The
/// eavesdropper is a plain session on the channel, which the notifier does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_announced_only_while_another_store_listens() {
    let db = store::testing::postgres().await;
    let x = PgStore::connect(&db.url).await.expect("store X");
    let mut eavesdropper = sqlx::postgres::PgListener::connect(&db.url).await.expect("eavesdropper");
    eavesdropper.listen(CHANNEL).await.expect("listen");

    for n in 0..5 {
        x.append(AppendRequest::single(format!("cart-alone{n}"), ExpectedVersion::NoStream, events(1)))
            .await
            .expect("append via X");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Had X sent any, one would have gone out within 10 ms of a commit.
    let heard = tokio::time::timeout(Duration::from_millis(500), eavesdropper.recv()).await;
    assert!(heard.is_err(), "X announced commits nobody else listens for: {heard:?}");

    let y = PgStore::connect(&db.url).await.expect("store Y");
    let mut doorbell = y.doorbell();
    doorbell.borrow_and_update();
    let written = x
        .append(AppendRequest::single("cart-heard", ExpectedVersion::NoStream, events(1)))
        .await
        .expect("append via X");
    // X looks for listeners again at most a second after it last looked (a NOTIFY sent then
    // may name an earlier commit, if it went out before this one).
    rang(&mut doorbell, "Y's, for X's commit").await;
    let last = written.last_position().0.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let notification = tokio::time::timeout_at(deadline, eavesdropper.recv())
            .await
            .unwrap_or_else(|_| panic!("no NOTIFY from X naming position {last}"))
            .expect("notification");
        if notification.payload().split_once(':').is_some_and(|(_, position)| position == last) {
            break;
        }
    }
}

/// The version-key violation is told by SQLSTATE and constraint name, and an append that
/// loses the race on it (not on its read expectation) is a Conflict naming the winner's
/// version, or for `Any` a silent retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_violations_are_mapped_by_constraint_name() {
    let (store, url) = fresh_store(PgStoreOptions::default()).await;
    store
        .append(AppendRequest::single("cart-u", ExpectedVersion::NoStream, events(1)))
        .await
        .expect("seed");

    // The raw error: SQLSTATE 23505 on events_stream_version_key, whatever the message says.
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let duplicate = sqlx::query(
        "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
         values (1, $1, 'cart-u', 'cart', 1, 'Tested', 1, '{}', '{}')",
    )
    .bind(Uuid::now_v7())
    .execute(&mut conn)
    .await
    .expect_err("duplicate version");
    let db = duplicate.as_database_error().expect("a database error");
    assert!(is_unique_violation(db, "events_stream_version_key"), "{db:?}");
    assert!(!is_unique_violation(db, "events_event_id_key"));

    // A reused event id is the caller's mistake, not a conflict.
    let reused = store.read_stream("cart-u", 1, 1).await.expect("read")[0].event_id;
    let mut again = event(1);
    again.event_id = reused;
    let result = store.append(AppendRequest::single("cart-other", ExpectedVersion::Any, vec![again])).await;
    assert!(matches!(result, Err(StoreError::InvalidRequest(_))), "{result:?}");

    // Losing on the constraint: A holds version 2 uncommitted; B reads version 1, writes 2,
    // and waits on A's index entry. When A commits, B's insert violates the constraint.
    for (expected, outcome_for_b) in [(ExpectedVersion::Exact(1), "conflict"), (ExpectedVersion::Any, "retried")] {
        let version = store.stream_version("cart-u").await.expect("version");
        let mut a = store.pool().begin().await.expect("begin A");
        let a_outcome = store
            .append_uncommitted(&mut a, AppendRequest::single("cart-u", ExpectedVersion::Exact(version), events(1)))
            .await
            .expect("A");
        let b_expected = if expected == ExpectedVersion::Any {
            ExpectedVersion::Any
        } else {
            ExpectedVersion::Exact(version)
        };
        let b = {
            let store = store.clone();
            tokio::spawn(async move { store.append(AppendRequest::single("cart-u", b_expected, events(1))).await })
        };
        // Wait until B is blocked on A's transaction.
        let waiting = async || -> i64 {
            sqlx::query_scalar(
                "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%insert into events%'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_activity")
        };
        eventually("B never waited on A", waiting, |waiting| *waiting == 1).await;
        a.commit().await.expect("commit A");
        store.notify_committed(a_outcome.last_position());
        let b_result = b.await.expect("task");
        match outcome_for_b {
            "conflict" => match b_result {
                Err(StoreError::Conflict { stream, expected, actual }) => {
                    assert_eq!(
                        (stream.as_str(), expected, actual),
                        ("cart-u", ExpectedVersion::Exact(version), version + 1)
                    );
                }
                other => panic!("expected a conflict, got {other:?}"),
            },
            _ => {
                let outcome = b_result.expect("Any retries after losing the race");
                assert_eq!(outcome.streams[0].first_version, version + 2);
            }
        }
    }
    let versions: Vec<u64> = store
        .read_stream("cart-u", 1, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate");
}

/// A database whose stored positions are ahead of the server's transaction counter (a
/// logical restore into a new cluster) is refused rather than written behind its readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_database_whose_positions_are_ahead_of_the_xid_counter() {
    let (store, url) = fresh_store(PgStoreOptions::default()).await;
    sqlx::query(
        "insert into events (position, event_id, stream_id, category, version, event_type, schema_version, data, metadata)
         values ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000) << 20 | 1, gen_random_uuid(), 'cart-f', 'cart', 1, 'Tested', 1, '{}', '{}')",
    )
    .execute(store.pool())
    .await
    .expect("plant a future position");
    let reopened = PgStore::connect(&url).await;
    assert!(matches!(reopened, Err(StoreError::Corrupt(_))), "{:?}", reopened.err());
}

/// `open_with` sizes the pool as asked: 20 concurrent reads on a pool of 3 open 3
/// connections to the database (plus the listener's and the notifier's one each, group
/// commit's writers and the store's two spare connections), not 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_with_sizes_the_pool() {
    let db = store::testing::postgres().await;
    let options = PgStoreOptions {
        max_connections: 3,
        ..PgStoreOptions::default()
    };
    // The pool, the listener and the notifier, group commit's writers, the two spare ones.
    let bound = 3 + 2 + options.group_commit_writers as i64 + 2;
    let opened = store::open_with(&db.url, options).await.unwrap_or_else(|e| panic!("open: {e:?}"));
    let store = opened.store();
    store
        .append(AppendRequest::single("cart-pool", ExpectedVersion::NoStream, events(1)))
        .await
        .unwrap_or_else(|e| panic!("append: {e:?}"));
    let mut watcher = PgConnection::connect(&db.url).await.expect("connect");
    let mut most = 0;
    for _ in 0..5 {
        let reads = (0..20).map(|_| {
            let store = store.clone();
            async move {
                store.read_stream("cart-pool", 1, 10).await.expect("read");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let count = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let n: i64 = sqlx::query_scalar("select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()")
                .fetch_one(&mut watcher)
                .await
                .expect("count");
            n
        };
        let (_, n) = tokio::join!(futures::future::join_all(reads), count);
        most = most.max(n);
    }
    assert!(
        (1..=bound).contains(&most),
        "{most} connections for a pool of 3, listener, notifier, group writers and spares"
    );
}

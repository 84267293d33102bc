//! Group commit on SQLite: one-stream appends that arrive while another is written share
//! one transaction. Each caller keeps its own expectation, answer and error; grouping is
//! observed in `recorded_at`, taken once per transaction (a lone append's differs from the
//! next one's: each waits for a sync of the WAL).

use store::{AppendRequest, EventStore, ExpectedVersion, Position, SqliteStore, StoreError};

use crate::group_commit::{
    a_reused_event_id_among_others_fails_alone, all_at_once, assert_one_transaction_a_round, each_of_200_at_once_gets_its_own_outcome, event,
    stored_events_per, versions, write_in_rounds,
};

async fn store() -> SqliteStore {
    SqliteStore::connect(&store::testing::sqlite()).await.expect("open store")
}

/// Events per writing transaction, from the stored `recorded_at`.
async fn events_per_transaction(store: &SqliteStore) -> Vec<usize> {
    stored_events_per(store, |event| event.recorded_at).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_that_arrive_together_share_a_transaction_and_each_gets_its_own_outcome() {
    let store = store().await;
    each_of_200_at_once_gets_its_own_outcome(&store).await;
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
    write_in_rounds(&store, WRITERS, ROUNDS).await;
    assert_one_transaction_a_round(&events_per_transaction(&store).await, WRITERS, ROUNDS);
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
    a_reused_event_id_among_others_fails_alone(&store().await).await;
}

/// While something else holds the writer past the pool's timeout, a whole group fails
/// together with UNAVAILABLE's error, instead of each of its appends waiting out the
/// timeout again in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_that_cannot_get_the_writer_fails_together() {
    let options = store::sqlite::SqliteStoreOptions {
        acquire_timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let store = SqliteStore::connect_with(&store::testing::sqlite(), options).await.expect("open store");
    let held = store.begin().await.expect("hold the writer");
    let appends = (0..20)
        .map(|i| AppendRequest::single(format!("cart-t{i}"), ExpectedVersion::NoStream, vec![event(i)]))
        .collect();
    let started = std::time::Instant::now();
    let results = all_at_once(&store, appends).await;
    let waited = started.elapsed();
    drop(held);
    for result in &results {
        assert!(
            matches!(result, Err(e @ StoreError::Database(sqlx::Error::PoolTimedOut)) if e.is_transient()),
            "{result:?}"
        );
    }
    // One timeout for the lone append, one for the group: not twenty in a row (4 s).
    assert!(waited < std::time::Duration::from_secs(2), "waited {waited:?}");
    assert!(store.read_all(Position::START, 100, None).await.expect("read_all").is_empty());
}

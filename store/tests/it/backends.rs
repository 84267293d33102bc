//! Runs the behaviour suite in `contract` against each backend: every test gets a fresh
//! database of its own, so the suite runs in parallel.

macro_rules! suite {
    ($backend:ident, $fresh_url:expr) => {
        mod $backend {
            use crate::contract;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let url: String = $fresh_url;
                        contract::$name(&url).await;
                    }
                };
            }

            case!(appends_and_reads_a_stream);
            case!(expectations_are_enforced);
            case!(concurrent_appends_with_same_expectation_have_one_winner);
            case!(concurrent_any_appends_all_apply);
            case!(multi_stream_appends_are_atomic);
            case!(large_appends_keep_the_request_order);
            case!(invalid_appends_are_rejected);
            case!(idempotency_keys_return_the_first_outcome);
            case!(concurrent_duplicate_keys_append_once);
            case!(global_feed_is_ordered_pageable_and_filterable);
            case!(subscriptions_catch_up_then_follow);
            case!(subscribers_joining_during_commits_miss_nothing);
            case!(slow_subscribers_are_dropped_and_delay_nobody);
            case!(old_schemas_are_upcast_on_read);
            case!(snapshots_are_keyed_by_state_schema_version);

            macro_rules! archive_case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let url: String = $fresh_url;
                        crate::archive::$name(&url).await;
                    }
                };
            }

            archive_case!(archived_streams_refuse_appends_and_reads_and_keep_the_feed);
            archive_case!(archive_under_concurrent_writes_keeps_the_feed_exactly_once);
            archive_case!(truncation_behind_a_snapshot_keeps_the_stream);
        }
    };
}

suite!(postgres, store::testing::postgres().await.url);
suite!(sqlite, store::testing::sqlite());

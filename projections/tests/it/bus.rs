//! The NATS JetStream publisher against a real server (`store::testing::nats_url`): every
//! event arrives once, in order, with its id as Nats-Msg-Id; a publisher restart mid-stream
//! (a checkpoint older than what was published) produces no duplicate. Each test uses a
//! stream and subject prefix of its own.

use std::time::Duration;

use crate::common::*;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use projections::{Projections, ProjectionsConfig};
use store::{Database, Position, RecordedEvent};
use uuid::Uuid;

fn nats_url() -> String {
    store::testing::nats_url()
}

fn config(tag: &str) -> ProjectionsConfig {
    ProjectionsConfig {
        run_reactors: false,
        nats_url: Some(nats_url()),
        nats_stream: format!("CS_TEST_{tag}"),
        nats_subject_prefix: format!("cstest{tag}"),
        worker_name: "bus".into(),
        ..ProjectionsConfig::default()
    }
}

struct Received {
    subject: String,
    msg_id: String,
    body: serde_json::Value,
}

/// Everything in the stream, in stream order, and the stream's message count.
async fn received(stream_name: &str) -> (Vec<Received>, u64) {
    let js = jetstream::new(async_nats::connect(nats_url()).await.expect("connect to NATS"));
    let stream = js.get_stream(stream_name).await.expect("the publisher created the stream");
    let count = stream.get_info().await.expect("stream info").state.messages;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut out = Vec::new();
    while (out.len() as u64) < count {
        let mut batch = consumer
            .batch()
            .max_messages((count as usize - out.len()).min(500))
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("fetch");
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let headers = message.headers.clone().unwrap_or_default();
            out.push(Received {
                subject: message.subject.to_string(),
                msg_id: headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default(),
                body: serde_json::from_slice(&message.payload).expect("JSON body"),
            });
        }
        assert!(out.len() > before, "the consumer stopped receiving at {} of {count}", out.len());
    }
    let _ = js.delete_stream(stream_name).await;
    (out, count)
}

async fn all_events(db: &Database) -> Vec<RecordedEvent> {
    db.store().read_all(Position::START, 100_000, None).await.unwrap()
}

fn assert_same(received: &[Received], events: &[RecordedEvent], prefix: &str) {
    assert_eq!(received.len(), events.len(), "one message per event");
    for (message, event) in received.iter().zip(events) {
        assert_eq!(message.msg_id, event.event_id.to_string());
        assert_eq!(message.subject, format!("{prefix}.{}.{}", event.category(), event.event_type));
        assert_eq!(message.body["position"], event.position.0.to_string());
        assert_eq!(message.body["stream"], event.stream_id);
        assert_eq!(message.body["version"], event.version);
        assert_eq!(message.body["type"], event.event_type);
        assert_eq!(message.body["schema_version"], event.schema_version);
        assert_eq!(message.body["data"], event.data);
        assert_eq!(message.body["metadata"]["actor"], event.metadata.actor);
    }
}

async fn every_event_arrives_in_order(db: Database) {
    let tag = Uuid::new_v4().simple().to_string();
    shop_history(&db, 4).await;
    let projections = Projections::new(db.clone(), config(&tag));
    projections.run_until_caught_up().await.expect("published");
    let status = projections.status("nats-publisher").await.unwrap();
    assert_eq!(status.position, db.store().head_position().await.unwrap());
    let (received, count) = received(&format!("CS_TEST_{tag}")).await;
    let events = all_events(&db).await;
    assert_eq!(count, events.len() as u64);
    assert_same(&received, &events, &format!("cstest{tag}"));
}

async fn a_restart_mid_stream_publishes_no_duplicate(db: Database) {
    let tag = Uuid::new_v4().simple().to_string();
    shop_history(&db, 2).await;
    let projections = Projections::start(db.clone(), config(&tag), live(&db)).await.unwrap();
    let head = db.store().head_position().await.unwrap();
    projections.wait_for("nats-publisher", head, WAIT).await.unwrap();
    let published = all_events(&db).await;
    // The process dies after JetStream acked these events but before its checkpoint
    // moved past them (the last batch is published again on restart).
    projections.shutdown().await;
    let middle = published[published.len() / 2].position;
    sql(
        &db,
        &format!("update projection_checkpoints set position = {} where name = 'nats-publisher'", middle.0),
    )
    .await;
    let cart = create_cart(&db, "late").await;
    add(&db, cart, "tea", 1, 450).await;

    let restarted = Projections::start(db.clone(), config(&tag), live(&db)).await.unwrap();
    let head = db.store().head_position().await.unwrap();
    restarted.wait_for("nats-publisher", head, WAIT).await.unwrap();
    restarted.shutdown().await;
    let (received, count) = received(&format!("CS_TEST_{tag}")).await;
    let events = all_events(&db).await;
    assert_eq!(count, events.len() as u64, "JetStream dropped the repeats");
    assert_same(&received, &events, &format!("cstest{tag}"));
}

backends!(every_event_arrives_in_order, a_restart_mid_stream_publishes_no_duplicate);

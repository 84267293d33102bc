//! The NATS JetStream publisher in the cluster (`store::testing::nats_url`): a stream and
//! subject prefix of the test's own, deleted when the test ends (also when it fails).

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use sqlx::PgPool;

pub struct Bus {
    pub url: String,
    pub stream: String,
    prefix: String,
}

impl Bus {
    pub fn new() -> Bus {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        Bus {
            url: store::testing::nats_url(),
            stream: format!("CS_NODES_{tag}"),
            prefix: format!("csnodes{tag}"),
        }
    }

    /// The flags that make a worker publish here.
    pub fn args(&self) -> Vec<String> {
        [
            "--nats-url",
            &self.url,
            "--nats-stream",
            &self.stream,
            "--nats-subject-prefix",
            &self.prefix,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The stream holds every event of the log exactly once (by `Nats-Msg-Id`); returns how
    /// many.
    pub async fn holds_each_event_once(&self, db: &PgPool) -> usize {
        let js = jetstream::new(async_nats::connect(&self.url).await.expect("connect to NATS"));
        let mut stream = js.get_stream(&self.stream).await.expect("the publisher created the stream");
        let count = stream.info().await.expect("stream info").state.messages;
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("a consumer");
        let mut ids = Vec::new();
        while (ids.len() as u64) < count {
            let mut batch = consumer
                .batch()
                .max_messages((count as usize - ids.len()).min(500))
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .expect("fetch");
            let before = ids.len();
            while let Some(message) = batch.next().await {
                let message = message.expect("a message");
                let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned());
                ids.push(id.expect("every message has its event id"));
            }
            assert!(ids.len() > before, "the consumer stopped at {} of {count}", ids.len());
        }
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "an event was published twice");
        let events: Vec<String> = sqlx::query_scalar("select event_id::text from events order by position")
            .fetch_all(db)
            .await
            .expect("the log");
        assert_eq!(ids, events, "the stream holds the log, in order, once");
        ids.len()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // A runtime of its own: drop may run inside or outside one.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(&url).await {
                    let _ = jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

//! The event bus to the outside: every event, in position order, to NATS JetStream.
//!
//! Subject `<prefix>.<category>.<EventType>` (prefix `cartsource` by default), header
//! `Nats-Msg-Id` = the event id (JetStream drops a repeat inside the stream's duplicate
//! window), JSON body `{position, stream, version, type, schema_version, data, metadata,
//! recorded_at}` with `position` as a decimal string (it may exceed what a JSON number keeps
//! exactly in JavaScript). Each publish waits for JetStream's ack before the next one, so the
//! stream holds the events in order, and the checkpoint moves only after the acks: at least
//! once, and the only repeats (after a crash between an ack and the checkpoint) are the last
//! batch's, seconds old, well inside the duplicate window (2 minutes by default).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::Serialize;
use store::{EventData, Metadata, RecordedEvent};

use crate::error::ProjectionError;

/// Where and how events are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    pub url: String,
    /// The JetStream stream, created when missing.
    pub stream: String,
    /// First token of every subject.
    pub subject_prefix: String,
    /// JetStream's dedupe window for `Nats-Msg-Id`, used when the stream is created.
    pub duplicate_window: Duration,
}

impl BusConfig {
    pub fn new(url: impl Into<String>) -> Self {
        BusConfig {
            url: url.into(),
            stream: "CARTSOURCE".into(),
            subject_prefix: "cartsource".into(),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

pub(crate) struct Publisher {
    js: jetstream::Context,
    prefix: String,
}

fn bus(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Bus(e.to_string())
}

/// A subject token from arbitrary text: NATS separators and wildcards become `_`.
fn token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() { '_' } else { c })
        .collect();
    if token.is_empty() {
        "_".to_owned()
    } else {
        token
    }
}

/// The subject an event is published on.
pub fn subject(prefix: &str, event: &RecordedEvent) -> String {
    format!("{prefix}.{}.{}", token(event.category()), token(&event.event_type))
}

/// The message body of an event. `data` goes out as the stored JSON text, never parsed.
#[derive(Serialize)]
struct Body<'a> {
    position: String,
    stream: &'a str,
    version: u64,
    #[serde(rename = "type")]
    event_type: &'a str,
    schema_version: i32,
    data: &'a EventData,
    metadata: &'a Metadata,
    recorded_at: String,
}

impl<'a> Body<'a> {
    fn of(event: &'a RecordedEvent) -> Self {
        Body {
            position: event.position.0.to_string(),
            stream: &event.stream_id,
            version: event.version,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            data: &event.data,
            metadata: &event.metadata,
            recorded_at: crate::db::format_time(event.recorded_at),
        }
    }
}

impl Publisher {
    pub async fn connect(config: &BusConfig) -> Result<Publisher, ProjectionError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(bus)?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            duplicate_window: config.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(bus)?;
        Ok(Publisher {
            js,
            prefix: config.subject_prefix.clone(),
        })
    }

    /// Publishes one event and waits for JetStream to store it (or recognise a repeat).
    pub async fn publish(&self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.event_id.to_string());
        headers.insert("Cartsource-Position", event.position.0.to_string());
        let payload = serde_json::to_vec(&Body::of(event)).map_err(bus)?;
        let ack = self
            .js
            .publish_with_headers(subject(&self.prefix, event), headers, payload.into())
            .await
            .map_err(bus)?;
        let ack = ack.await.map_err(bus)?;
        if ack.duplicate {
            tracing::debug!(position = %event.position, "JetStream already had this event");
        }
        Ok(())
    }
}

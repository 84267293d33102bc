//! Catch-up-then-live subscriptions, written once over `read_all`/`read_stream` and the
//! doorbell. The doorbell only shortens the wait: every wake-up (and every poll, in case a
//! wake-up was lost) re-reads from the subscriber's own checkpoint, so a lost notification
//! or a reconnect delays an event but never loses it, and nothing is delivered twice.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};

use crate::error::StoreError;
use crate::event::{Position, RecordedEvent};
use crate::event_store::EventStore;

/// Page size for catching up.
const BATCH: usize = 500;
/// How long a subscriber waits for the doorbell before it polls anyway.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Pause after a failed read before trying again (transient errors only).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

enum Cursor {
    All { after: Position, categories: Option<Vec<String>> },
    Stream { stream_id: String, after_version: u64 },
}

struct State {
    store: Arc<dyn EventStore>,
    cursor: Cursor,
    buffer: std::collections::VecDeque<RecordedEvent>,
    doorbell: tokio::sync::watch::Receiver<u64>,
    done: bool,
}

pub fn subscribe_all(
    store: Arc<dyn EventStore>,
    after: Position,
    categories: Option<Vec<String>>,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    run(store, Cursor::All { after, categories })
}

pub fn subscribe_stream(store: Arc<dyn EventStore>, stream_id: &str, after_version: u64) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    run(
        store,
        Cursor::Stream {
            stream_id: stream_id.to_owned(),
            after_version,
        },
    )
}

fn run(store: Arc<dyn EventStore>, cursor: Cursor) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    let doorbell = store.doorbell();
    let state = State {
        store,
        cursor,
        buffer: Default::default(),
        doorbell,
        done: false,
    };
    stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            if let Some(event) = state.buffer.pop_front() {
                match &mut state.cursor {
                    Cursor::All { after, .. } => *after = event.position,
                    Cursor::Stream { after_version, .. } => *after_version = event.version,
                }
                return Some((Ok(event), state));
            }
            // Mark the doorbell as seen *before* reading, so a commit that lands during the
            // read rings again and is not slept through.
            state.doorbell.borrow_and_update();
            let read = match &state.cursor {
                Cursor::All { after, categories } => state.store.read_all(*after, BATCH, categories.as_deref()).await,
                Cursor::Stream { stream_id, after_version } => state.store.read_stream(stream_id, after_version + 1, BATCH).await,
            };
            match read {
                Ok(events) if !events.is_empty() => state.buffer.extend(events),
                Ok(_) => {
                    if let Ok(Err(_)) = tokio::time::timeout(POLL_INTERVAL, state.doorbell.changed()).await {
                        // The store is gone; keep polling rather than spin.
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "subscription read failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    state.done = true;
                    return Some((Err(e), state));
                }
            }
        }
    })
    .boxed()
}

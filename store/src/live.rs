//! One live feed per process, shared by every subscriber.
//!
//! One file (about 580 lines): the hand-over below is a property of the reader task, the
//! registry and the subscriber together, and its proof reads best next to all three.
//!
//! One reader task follows the store's committed events (`read_all`, woken by the store's
//! doorbell, with a slow poll in case a ring is lost) and hands each event, in memory, to
//! the subscribers of its stream and to the feed subscribers of its category. Subscribers
//! are indexed by stream id and by category, so a commit costs work for the subscribers it
//! concerns only; once live, a subscriber reads nothing from the database and polls
//! nothing, and it never holds a connection while it waits.
//!
//! # The hand-over from catch-up to live: no gap, no duplicate
//!
//! A new subscriber (1) registers with the reader, so live events start buffering into its
//! own bounded channel, (2) waits until the reader knows where it started, (3) catches up
//! from the store (`read_stream` / `read_all` pages from its cursor until a page is not
//! full), then (4) drains its channel, skipping what it already delivered (by version for a
//! stream, by position for the feed). Why nothing is missed:
//!
//! * The reader hands out only events it read from the gap-free feed, in position order.
//!   An event it handed out *after* the registration is in the channel.
//! * An event it handed out *before* the registration was committed, and below the feed's
//!   horizon, before the catch-up read began (that read starts after the registration).
//!   `read_stream` sees every committed event, and `read_all`'s horizon never moves back, so
//!   a catch-up that reads until a page is not full has read past every such event.
//! * Events older than the reader's starting head were never handed out; the catch-up
//!   starts after the reader read its head (step 2), so it reads past them too.
//!
//! So catch-up plus channel hold every event; skipping by version/position removes the
//! overlap. The feed is in position order, which for one stream is not always version order
//! (a multi-stream transaction may take an older position for a later version): a stream
//! subscriber that receives version n+2 while it waits for n+1 reads the stream again from
//! n+1 (the same argument applies), so its versions are still 1, 2, 3, ... with no gap.
//!
//! # Slow subscribers
//!
//! The reader never waits for a subscriber: it `try_send`s into the subscriber's bounded
//! channel. A subscriber whose channel is full is dropped from the feed; it delivers what
//! it has buffered and then ends with [`StoreError::SubscriberTooSlow`], which says where
//! to resume. (While it is still catching up from the store, an overflow only makes it
//! register again and read on: it is reading the database anyway.) A subscriber whose
//! receiver is gone is removed when its stream is dropped, or at the latest on the next
//! event for it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::event::{category_of, Position, RecordedEvent};
use crate::event_store::EventStore;

/// How long the reader waits for the doorbell before it reads anyway.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Pause after a failed read before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Where a subscriber dropped from the feed should start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// A stream subscription: subscribe again after this version.
    AfterVersion(u64),
    /// A feed subscription: subscribe again after this position.
    AfterPosition(Position),
}

impl fmt::Display for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resume::AfterVersion(v) => write!(f, "version {v}"),
            Resume::AfterPosition(p) => write!(f, "position {p}"),
        }
    }
}

/// Sizes of the live feed.
#[derive(Clone, Debug)]
pub struct LiveFeedOptions {
    /// Events a subscriber may have waiting before it is dropped as too slow. Memory is
    /// taken as events wait (in blocks of 32 slots), not reserved up front.
    pub buffer: usize,
    /// Page size of the reader's and of catch-up reads.
    pub page: usize,
    /// How long the reader waits for the doorbell before it reads anyway.
    pub poll_interval: Duration,
}

impl Default for LiveFeedOptions {
    fn default() -> Self {
        LiveFeedOptions {
            buffer: 1024,
            page: 500,
            poll_interval: POLL_INTERVAL,
        }
    }
}

/// One per process: one feed reader follows the store's committed events (read_all, woken
/// by the store's doorbell, with a slow poll as fallback) and hands each event, in memory,
/// to the subscribers of its stream and to the feed subscribers of its category.
#[derive(Clone)]
pub struct LiveFeed {
    shared: Arc<Shared>,
    _reader: Arc<ReaderHandle>,
}

impl LiveFeed {
    /// Starts the reader at the store's current head. The reader task stops when the last
    /// clone is dropped. Must be called within a Tokio runtime.
    pub fn start(store: Arc<dyn EventStore>) -> LiveFeed {
        Self::start_with(store, LiveFeedOptions::default())
    }

    /// [`LiveFeed::start`] with other sizes.
    pub fn start_with(store: Arc<dyn EventStore>, options: LiveFeedOptions) -> LiveFeed {
        let options = LiveFeedOptions {
            buffer: options.buffer.max(1),
            page: options.page.max(1),
            ..options
        };
        let shared = Arc::new(Shared {
            store,
            options,
            registry: Mutex::new(Registry::default()),
            head: watch::channel(None).0,
        });
        let task = tokio::spawn(read(shared.clone()));
        LiveFeed {
            shared,
            _reader: Arc::new(ReaderHandle(task.abort_handle())),
        }
    }

    /// Catch-up-then-live for one stream: every event with version > after_version, once,
    /// in order. Live events are shared, not copied: every subscriber of a stream gets the
    /// same `Arc` (so work derived from an event can be shared too).
    pub fn stream(&self, stream_id: &str, after_version: u64) -> BoxStream<'static, Result<Arc<RecordedEvent>, StoreError>> {
        self.subscribe(Cursor::Stream {
            stream_id: stream_id.to_owned(),
            version: after_version,
        })
    }

    /// Catch-up-then-live for the global log after `after`, optionally only these
    /// categories: every event once, in position order.
    pub fn all(&self, after: Position, categories: Option<Vec<String>>) -> BoxStream<'static, Result<Arc<RecordedEvent>, StoreError>> {
        let categories = categories.map(|mut c| {
            c.sort_unstable();
            c.dedup();
            c
        });
        self.subscribe(Cursor::All { after, categories })
    }

    /// The position up to which the reader has handed out the feed (`None` until it has
    /// read the store's head).
    pub fn head(&self) -> Option<Position> {
        *self.shared.head.borrow()
    }

    /// Changes whenever the reader has handed out more of the feed.
    pub fn watch_head(&self) -> watch::Receiver<Option<Position>> {
        self.shared.head.subscribe()
    }

    /// Subscribers registered with the reader now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.lock().members.len()
    }

    fn subscribe(&self, cursor: Cursor) -> BoxStream<'static, Result<Arc<RecordedEvent>, StoreError>> {
        // Registered now, before anything is read: see the module's hand-over argument.
        let registration = Shared::register(&self.shared, cursor.interest());
        let subscriber = Subscriber {
            registration,
            cursor,
            catching_up: true,
            page: Vec::new().into_iter(),
            done: false,
        };
        stream::unfold(subscriber, |mut subscriber| async move {
            let item = subscriber.next().await?;
            Some((item, subscriber))
        })
        .boxed()
    }
}

/// Aborts the reader when the last [`LiveFeed`] clone goes.
struct ReaderHandle(tokio::task::AbortHandle);

impl Drop for ReaderHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    store: Arc<dyn EventStore>,
    options: LiveFeedOptions,
    registry: Mutex<Registry>,
    /// The reader's position; `None` until it has read the head.
    head: watch::Sender<Option<Position>>,
}

/// What a subscriber wants from the feed.
#[derive(Clone)]
enum Interest {
    Stream(String),
    Categories(Vec<String>),
    Everything,
}

/// Why a subscriber's channel was closed by the reader.
#[derive(Debug)]
enum Ended {
    TooSlow,
    Failed(String),
}

struct Entry {
    id: u64,
    sender: mpsc::Sender<Arc<RecordedEvent>>,
    ended: Arc<OnceLock<Ended>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// The reader is gone: new subscribers end at once.
    stopped: bool,
    members: HashMap<u64, Interest>,
    by_stream: HashMap<String, Vec<Entry>>,
    by_category: HashMap<String, Vec<Entry>>,
    everything: Vec<Entry>,
}

impl Registry {
    fn remove(&mut self, id: u64) {
        let Some(interest) = self.members.remove(&id) else { return };
        fn take(map: &mut HashMap<String, Vec<Entry>>, key: &str, id: u64) {
            if let Some(list) = map.get_mut(key) {
                list.retain(|e| e.id != id);
                if list.is_empty() {
                    map.remove(key);
                }
            }
        }
        match interest {
            Interest::Stream(stream_id) => take(&mut self.by_stream, &stream_id, id),
            Interest::Categories(categories) => categories.iter().for_each(|c| take(&mut self.by_category, c, id)),
            Interest::Everything => self.everything.retain(|e| e.id != id),
        }
    }

    /// Offers one event to its subscribers; collects the ids of those to drop.
    fn offer(&self, event: &Arc<RecordedEvent>, dropped: &mut Vec<u64>) {
        fn offer_to(list: &[Entry], event: &Arc<RecordedEvent>, dropped: &mut Vec<u64>) {
            for entry in list.iter() {
                // Dropped earlier in this batch (from another of its categories): it must
                // not receive anything after the event it missed.
                if entry.ended.get().is_some() {
                    continue;
                }
                match entry.sender.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        let _ = entry.ended.set(Ended::TooSlow);
                        dropped.push(entry.id);
                    }
                    Err(TrySendError::Closed(_)) => dropped.push(entry.id),
                }
            }
        }
        if let Some(list) = self.by_stream.get(&event.stream_id) {
            offer_to(list, event, dropped);
        }
        if let Some(list) = self.by_category.get(category_of(&event.stream_id)) {
            offer_to(list, event, dropped);
        }
        offer_to(&self.everything, event, dropped);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent even if a holder panicked: every change is one step.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(shared: &Arc<Shared>, interest: Interest) -> Registration {
        let (sender, receiver) = mpsc::channel(shared.options.buffer);
        let ended = Arc::new(OnceLock::new());
        let mut registry = shared.lock();
        registry.next_id += 1;
        let id = registry.next_id;
        if !registry.stopped {
            let entry = || Entry {
                id,
                sender: sender.clone(),
                ended: ended.clone(),
            };
            match &interest {
                Interest::Stream(stream_id) => registry.by_stream.entry(stream_id.clone()).or_default().push(entry()),
                Interest::Categories(categories) => {
                    for category in categories {
                        registry.by_category.entry(category.clone()).or_default().push(entry());
                    }
                }
                Interest::Everything => registry.everything.push(entry()),
            }
            registry.members.insert(id, interest);
        }
        // Without the registry's senders (stopped) the receiver ends at once.
        drop(sender);
        Registration {
            shared: shared.clone(),
            id,
            receiver,
            ended,
        }
    }

    /// Hands a page of the feed to its subscribers, without ever waiting for one.
    fn dispatch(&self, events: Vec<RecordedEvent>) {
        let mut dropped = Vec::new();
        let mut registry = self.lock();
        for event in events {
            registry.offer(&Arc::new(event), &mut dropped);
        }
        for id in dropped {
            registry.remove(id);
        }
    }

    /// Ends every subscriber with the reader's error (one it cannot read past).
    fn fail_all(&self, error: &StoreError) {
        let mut registry = self.lock();
        let ids: Vec<u64> = registry.members.keys().copied().collect();
        let entries = registry
            .by_stream
            .values()
            .chain(registry.by_category.values())
            .flatten()
            .chain(&registry.everything);
        for entry in entries {
            let _ = entry.ended.set(Ended::Failed(error.to_string()));
        }
        for id in ids {
            registry.remove(id);
        }
    }

    fn stop(&self) {
        let mut registry = self.lock();
        registry.stopped = true;
        registry.members.clear();
        registry.by_stream.clear();
        registry.by_category.clear();
        registry.everything.clear();
        drop(registry);
        // Wakes subscribers waiting for the reader to start.
        self.head.send_modify(|_| {});
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }
}

/// A subscriber's place in the registry; leaving it (drop) removes the subscriber.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
    receiver: mpsc::Receiver<Arc<RecordedEvent>>,
    ended: Arc<OnceLock<Ended>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.lock().remove(self.id);
    }
}

/// Clears the registry when the reader task ends (aborted or not), so subscribers end.
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The reader: from the store's head on, every committed event to its subscribers.
async fn read(shared: Arc<Shared>) {
    let _stop = StopOnDrop(shared.clone());
    let store = shared.store.clone();
    let LiveFeedOptions { page, poll_interval, .. } = shared.options.clone();
    let mut doorbell = store.doorbell();
    let mut after = loop {
        match store.head_position().await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "live feed cannot read the store's head; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    };
    shared.head.send_replace(Some(after));
    loop {
        // Seen before reading, so a commit that lands during the read rings again.
        doorbell.borrow_and_update();
        match store.read_all(after, page, None).await {
            Ok(events) => {
                let full = events.len() >= page;
                if let Some(last) = events.last() {
                    after = last.position;
                    shared.dispatch(events);
                    shared.head.send_replace(Some(after));
                }
                if full {
                    continue;
                }
                if let Ok(Err(_)) = tokio::time::timeout(poll_interval, doorbell.changed()).await {
                    // The store's doorbell is gone; keep polling rather than spin.
                    tokio::time::sleep(poll_interval).await;
                }
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "live feed read failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => {
                tracing::error!(error = %e, after = %after, "live feed cannot read on; its subscribers end");
                shared.fail_all(&e);
                tokio::time::sleep(poll_interval).await;
            }
        }
    }
}

enum Cursor {
    Stream { stream_id: String, version: u64 },
    All { after: Position, categories: Option<Vec<String>> },
}

/// What a subscriber does with an event from its channel.
enum Verdict {
    Deliver,
    /// Already delivered (read during catch-up).
    Skip,
    /// A later version of the stream than the next one: read the stream again.
    Gap,
}

impl Cursor {
    fn interest(&self) -> Interest {
        match self {
            Cursor::Stream { stream_id, .. } => Interest::Stream(stream_id.clone()),
            Cursor::All { categories: Some(c), .. } => Interest::Categories(c.clone()),
            Cursor::All { categories: None, .. } => Interest::Everything,
        }
    }

    fn verdict(&self, event: &RecordedEvent) -> Verdict {
        match self {
            Cursor::Stream { version, .. } if event.version <= *version => Verdict::Skip,
            Cursor::Stream { version, .. } if event.version > *version + 1 => Verdict::Gap,
            Cursor::All { after, .. } if event.position <= *after => Verdict::Skip,
            _ => Verdict::Deliver,
        }
    }

    fn advance(&mut self, event: &RecordedEvent) {
        match self {
            Cursor::Stream { version, .. } => *version = event.version,
            Cursor::All { after, .. } => *after = event.position,
        }
    }

    fn resume(&self) -> Resume {
        match self {
            Cursor::Stream { version, .. } => Resume::AfterVersion(*version),
            Cursor::All { after, .. } => Resume::AfterPosition(*after),
        }
    }
}

struct Subscriber {
    registration: Registration,
    cursor: Cursor,
    catching_up: bool,
    /// The catch-up page being delivered (released once delivered, so an idle subscriber
    /// keeps no page).
    page: std::vec::IntoIter<RecordedEvent>,
    done: bool,
}

impl Subscriber {
    async fn next(&mut self) -> Option<Result<Arc<RecordedEvent>, StoreError>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.page.next() {
                self.cursor.advance(&event);
                return Some(Ok(Arc::new(event)));
            }
            self.page = Vec::new().into_iter();
            if self.catching_up {
                match self.catch_up().await {
                    Ok(true) => continue,
                    Ok(false) => return self.end(None),
                    Err(e) => return self.end(Some(e)),
                }
            }
            match self.registration.receiver.recv().await {
                Some(event) => match self.cursor.verdict(&event) {
                    Verdict::Deliver => {
                        self.cursor.advance(&event);
                        return Some(Ok(event));
                    }
                    Verdict::Skip => {}
                    Verdict::Gap => self.catching_up = true,
                },
                None => {
                    let error = match self.registration.ended.get() {
                        Some(Ended::TooSlow) => Some(StoreError::SubscriberTooSlow {
                            resume: self.cursor.resume(),
                        }),
                        Some(Ended::Failed(reason)) => Some(StoreError::LiveFeedFailed(reason.clone())),
                        // The reader stopped (the feed was dropped): the stream ends.
                        None => None,
                    };
                    return self.end(error);
                }
            }
        }
    }

    fn end(&mut self, error: Option<StoreError>) -> Option<Result<Arc<RecordedEvent>, StoreError>> {
        self.done = true;
        error.map(Err)
    }

    /// Reads one page from the store after the cursor. Returns false when the feed has
    /// stopped.
    async fn catch_up(&mut self) -> Result<bool, StoreError> {
        let shared = self.registration.shared.clone();
        // The reader must know its starting head first (see the module's argument).
        let mut head = shared.head.subscribe();
        if head.wait_for(|h| h.is_some() || shared.stopped()).await.is_err() || head.borrow().is_none() {
            return Ok(false);
        }
        let page = shared.options.page;
        let read = match &self.cursor {
            Cursor::Stream { stream_id, version } => shared.store.read_stream(stream_id, version + 1, page).await,
            Cursor::All { after, categories } => shared.store.read_all(*after, page, categories.as_deref()).await,
        };
        match read {
            Ok(events) => {
                if events.len() < page {
                    match self.registration.ended.get() {
                        None => self.catching_up = false,
                        // Overflowed while reading the store anyway: register again and read on.
                        Some(Ended::TooSlow) => self.registration = Shared::register(&shared, self.cursor.interest()),
                        Some(Ended::Failed(reason)) => return Err(StoreError::LiveFeedFailed(reason.clone())),
                    }
                }
                self.page = events.into_iter();
                Ok(true)
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "catch-up read failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

//! Wake-ups: how feed readers, here and in other processes, learn that new events may be
//! readable. Our own commits ring the local `watch` at once; a notifier task sends one
//! `pg_notify` per burst of local commits (never inside the append's transaction: NOTIFY
//! takes a cluster-wide lock at commit and would serialise every append), while another
//! process listens; a listener task on its own connection rings on every notification from
//! other processes and whenever its connection was lost. Subscriptions poll as well, so a
//! lost notification only delays.
//!
//! A NOTIFY nobody else hears is not free: every 10 ms while appends go on, a round trip
//! for the notifier, and our own listener's server process and task woken to drop it: a
//! single writer made about a twentieth fewer appends a second for it
//! (`bench/store-history.md`, "The NOTIFY nobody hears"). So the notifier first looks for
//! other processes' listeners (their sessions in `pg_stat_activity`, by application name)
//! and, finding none, sends nothing and looks again after [`PEERS_RECHECK`]; a process that
//! starts listening hears our commits within about that, and polls meanwhile, like one
//! whose notification was lost.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::PgConnection;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::connect_within;
use crate::error::StoreError;
use crate::event::Position;

/// The NOTIFY channel every cartsource process listens on.
pub const CHANNEL: &str = "cartsource_events";
/// `application_name` of the listener's connection (operators and tests find it by this).
pub const LISTENER_APPLICATION_NAME: &str = "cartsource-listener";
/// `application_name` of the notifier's connection.
pub const NOTIFIER_APPLICATION_NAME: &str = "cartsource-notifier";

/// At most one NOTIFY per this interval: under load the notifier sends one per burst, so
/// other processes hear of commits within about this delay at a bounded cost.
const MIN_NOTIFY_INTERVAL: Duration = Duration::from_millis(10);
/// While the notifier finds no other process listening, it sends nothing and looks again
/// after this long (and this often while it finds some, to stop when they are gone).
const PEERS_RECHECK: Duration = Duration::from_secs(1);
/// Whether a cartsource listener other than ours (`$2`: its backend pid, 0 while unknown)
/// has a session in this database. Application names and databases of every session are
/// visible to any role (not their queries or states).
const PEERS_SQL: &str = "select exists (select 1 from pg_stat_activity where datname = current_database() and application_name = $1 and pid <> $2)";
/// How long the notifier waits for its connection to open.
const NOTIFIER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between attempts to re-establish the listener.
const MAX_LISTENER_BACKOFF: Duration = Duration::from_secs(5);

/// The doorbell, what this store knows was committed, and the listener and notifier tasks
/// (stopped when this is dropped).
pub(super) struct Wakeups {
    doorbell: watch::Sender<u64>,
    /// Wakes the notifier; a permit stored while it is busy coalesces a burst into one NOTIFY.
    notifier: Arc<Notify>,
    /// The newest position this store knows was committed: by itself, or by another
    /// process that said so in its NOTIFY.
    known: Arc<Known>,
    tasks: Vec<JoinHandle<()>>,
}

/// Newest committed positions: `own` are this store's commits (what its NOTIFY announces),
/// `any` includes other processes' (what its feed readers wait for).
/// `listener` is our listener's backend pid (0 while unknown), which the notifier does not
/// count among the processes it tells.
#[derive(Default)]
struct Known {
    own: AtomicU64,
    any: AtomicU64,
    listener: AtomicI32,
}

impl Wakeups {
    /// Starts listening (before it returns, so a commit made after `connect` is always
    /// heard) and starts the notifier, each on a connection of its own beside `pool`.
    pub(super) async fn start(pool: &PgPool) -> Result<Self, StoreError> {
        let (doorbell, _) = watch::channel(0u64);
        let notifier = Arc::new(Notify::new());
        let known = Arc::new(Known::default());
        // Our own notifications carry this id, so our listener does not ring twice for them.
        let instance = Uuid::new_v4().simple().to_string();
        let base_options = (*pool.connect_options()).clone();

        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(base_options.clone().application_name(LISTENER_APPLICATION_NAME));
        let mut listener = start_listener(&listener_pool).await?;
        known.listener.store(backend_pid(&mut listener).await, Ordering::Relaxed);
        // A NOTIFY is a transaction with a commit record of its own; nothing is lost if a
        // crash forgets it, so it does not wait for the WAL flush (and does not queue
        // behind the appends' flushes, or make them queue behind it).
        let notifier_options = base_options
            .application_name(NOTIFIER_APPLICATION_NAME)
            .options([("synchronous_commit", "off")]);

        let tasks = vec![
            tokio::spawn(listen(listener_pool, listener, doorbell.clone(), known.clone(), instance.clone())),
            tokio::spawn(notify(notifier_options, notifier.clone(), known.clone(), instance)),
        ];
        Ok(Wakeups {
            doorbell,
            notifier,
            known,
            tasks,
        })
    }

    /// Events up to `last_position` were committed by this store: wakes subscribers here
    /// at once, and in other processes with the next NOTIFY.
    pub(super) fn committed(&self, last_position: Position) {
        self.known.own.fetch_max(last_position.0, Ordering::Relaxed);
        self.known.any.fetch_max(last_position.0, Ordering::Relaxed);
        ring(&self.doorbell);
        self.notifier.notify_one();
    }

    /// The newest position known to be committed, by this process or another.
    pub(super) fn newest_known(&self) -> u64 {
        self.known.any.load(Ordering::Relaxed)
    }

    pub(super) fn doorbell(&self) -> watch::Receiver<u64> {
        self.doorbell.subscribe()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The listener's server process, or 0 when it cannot be told (the notifier then counts
/// our own listener as another process's, and sends: the safe side).
async fn backend_pid(listener: &mut PgListener) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()").fetch_one(listener).await.unwrap_or(0)
}

fn ring(doorbell: &watch::Sender<u64>) {
    doorbell.send_modify(|n| *n = n.wrapping_add(1));
}

/// Rings the doorbell for every other process's NOTIFY and after every reconnect (the
/// notifications sent while we were away are lost; readers re-read from their checkpoints).
/// A payload is `<instance>:<newest position>`; anything else still rings.
async fn listen(pool: PgPool, mut listener: PgListener, doorbell: watch::Sender<u64>, known: Arc<Known>, instance: String) {
    let mut pause = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                let (sender, position) = notification.payload().split_once(':').unwrap_or(("", ""));
                if sender != instance {
                    if let Ok(position) = position.parse::<u64>() {
                        known.any.fetch_max(position, Ordering::Relaxed);
                    }
                    ring(&doorbell);
                }
            }
            // The connection was lost and (eager reconnect) is listening again.
            Ok(None) => {
                tracing::info!("event listener reconnected");
                known.listener.store(backend_pid(&mut listener).await, Ordering::Relaxed);
                ring(&doorbell);
            }
            Err(e) => {
                tracing::warn!(error = %e, "event listener failed; reconnecting");
                ring(&doorbell);
                loop {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_LISTENER_BACKOFF);
                    match start_listener(&pool).await {
                        Ok(fresh) => {
                            listener = fresh;
                            known.listener.store(backend_pid(&mut listener).await, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "event listener cannot reconnect yet"),
                    }
                }
                pause = Duration::from_millis(100);
                ring(&doorbell);
            }
        }
    }
}

/// Sends one NOTIFY per burst of local commits, at most one per `MIN_NOTIFY_INTERVAL`,
/// naming the newest position this store committed, while another process listens.
///
/// On a connection of its own, kept open, not a pool: sqlx's pool pings a connection when
/// it hands it out and again when it takes it back, three round trips per NOTIFY where one
/// does, every 10 ms while appends go on. A statement that fails is sent once more on a
/// fresh connection; a NOTIFY that fails again is skipped (other processes poll anyway).
async fn notify(options: PgConnectOptions, wake: Arc<Notify>, known: Arc<Known>, instance: String) {
    let mut conn = None;
    // Whether another process listened when we last looked, and when that was.
    let mut peers: Option<(bool, tokio::time::Instant)> = None;
    loop {
        wake.notified().await;
        let now = tokio::time::Instant::now();
        let listening = match peers {
            Some((listening, looked)) if now < looked + PEERS_RECHECK => listening,
            _ => {
                let ours = known.listener.load(Ordering::Relaxed);
                let found = on_connection(&mut conn, &options, Say::Peers(ours)).await;
                // Not known: tell, as if someone listened.
                let listening = found.unwrap_or(true);
                peers = Some((listening, now));
                listening
            }
        };
        if !listening {
            // Commits meanwhile leave one wake-up behind, which looks again.
            tokio::time::sleep_until(now + PEERS_RECHECK).await;
            continue;
        }
        let payload = format!("{instance}:{}", known.own.load(Ordering::Relaxed));
        let sent = on_connection(&mut conn, &options, Say::Notify(&payload)).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not send the commit notification");
        }
        tokio::time::sleep_until(now + MIN_NOTIFY_INTERVAL).await;
    }
}

/// What the notifier asks of the server.
enum Say<'a> {
    /// Whether another process listens (`PEERS_SQL`), given our listener's pid.
    Peers(i32),
    /// One NOTIFY with this payload (true once sent).
    Notify(&'a str),
}

/// Says `what` on the notifier's connection, opened first if it is not; when that fails (a
/// restarted server, a terminated session), once more on a fresh connection.
async fn on_connection(conn: &mut Option<PgConnection>, options: &PgConnectOptions, what: Say<'_>) -> Result<bool, sqlx::Error> {
    let mut retried = false;
    loop {
        let open = match conn {
            Some(open) => open,
            None => conn.insert(connect_within(options, NOTIFIER_CONNECT_TIMEOUT).await?),
        };
        let said = match what {
            Say::Peers(ours) => {
                sqlx::query_scalar(PEERS_SQL)
                    .bind(LISTENER_APPLICATION_NAME)
                    .bind(ours)
                    .fetch_one(open)
                    .await
            }
            Say::Notify(payload) => sqlx::query("select pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(open)
                .await
                .map(|_| true),
        };
        match said {
            Ok(said) => return Ok(said),
            Err(e) => {
                *conn = None;
                if retried {
                    return Err(e);
                }
                retried = true;
            }
        }
    }
}

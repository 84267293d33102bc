//! Group commit on SQLite: the command path's appends (one stream, no idempotency key, at
//! most `INSERT_ROWS` events) that arrive while another is being written share one
//! transaction and one sync of the WAL.
//!
//! An append that finds the writer idle is written at once, alone, in its caller's task, in
//! autocommit: one statement, so grouping costs a lone writer nothing. Appends that arrive
//! meanwhile queue; when that write is done, a task of their own writes the whole queue in
//! one `BEGIN IMMEDIATE` transaction, each append's checked insert in turn, then one COMMIT,
//! and only then answers each caller: an acknowledgement still means that caller's events
//! are durable. The task goes on while appends keep queueing; it yields once before taking
//! the next queue, so that callers it just answered are grouped again rather than the
//! first of them being written alone and the rest behind it.
//!
//! Each expectation is checked on its own, by its own statement, against its stream as the
//! appends before it in the group left it. A refused append (CONFLICT, ARCHIVED, a reused
//! event id) wrote nothing, and SQLite undoes only the statement that failed, so it affects
//! no other. Any other failure inside the group rolls all of it back and each append is
//! written again alone, where it gets its own answer. A failed BEGIN (the writer did not
//! come free in time) or COMMIT fails every caller of the group, with a transient error.

use std::mem;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::append::append_stream_on;
use super::rows::format_timestamp;
use super::SqliteStore;
use crate::error::StoreError;
use crate::event::{AppendOutcome, StreamAppend};

/// Whether the writer is taken by a lone append or a group, and the appends waiting for it.
#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    busy: bool,
    queue: Vec<Pending>,
}

struct Pending {
    stream: StreamAppend,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

impl GroupCommit {
    /// A panic while the lock is held leaves the state whole (every change is one step).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SqliteStore {
    /// Appends `stream` alone when the writer is idle, else with the group written next.
    pub(super) async fn append_grouped(&self, stream: &StreamAppend) -> Result<AppendOutcome, StoreError> {
        let queued = {
            let mut state = self.group.state();
            if state.busy {
                let (reply, answer) = oneshot::channel();
                state.queue.push(Pending {
                    stream: stream.clone(),
                    reply,
                });
                Some(answer)
            } else {
                state.busy = true;
                None
            }
        };
        match queued {
            Some(answer) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::Database(sqlx::Error::Io(std::io::Error::other(
                    "the group this append was in was dropped (the runtime is shutting down); it may or may not have been written",
                ))))
            }),
            None => {
                let _turn = Turn(self);
                self.append_stream(stream).await
            }
        }
    }

    /// Writes queued appends, group after group, until none are waiting.
    async fn write_groups(self) {
        let mut writing = Writing { store: &self, done: false };
        loop {
            let group = {
                let mut state = self.group.state();
                if state.queue.is_empty() {
                    state.busy = false;
                    writing.done = true;
                    return;
                }
                mem::take(&mut state.queue)
            };
            self.write_group(group).await;
            tokio::task::yield_now().await;
        }
    }

    async fn write_group(&self, group: Vec<Pending>) {
        if let [_] = group.as_slice() {
            return self.each_alone(group).await;
        }
        let (mut tx, now) = match (self.begin().await, format_timestamp(OffsetDateTime::now_utc())) {
            (Ok(tx), Ok(now)) => (tx, now),
            // The writer did not come free (or the pool closed): each would wait as long again.
            (Err(StoreError::Database(e)), _) => return each_failed(group, &e),
            _ => return self.each_alone(group).await,
        };
        let mut answers = Vec::with_capacity(group.len());
        for pending in &group {
            match append_stream_on(&mut tx, &pending.stream, &now).await {
                // Refused by its own statement (or before it ran): nothing else undone.
                answer @ (Ok(_) | Err(StoreError::Conflict { .. } | StoreError::StreamArchived { .. } | StoreError::InvalidRequest(_))) => {
                    answers.push(answer)
                }
                Err(_) => {
                    drop(tx);
                    return self.each_alone(group).await;
                }
            }
        }
        match tx.commit().await {
            Ok(()) => {
                for (pending, answer) in group.into_iter().zip(answers) {
                    let _ = pending.reply.send(answer);
                }
            }
            Err(e) => each_failed(group, &e),
        }
    }

    async fn each_alone(&self, group: Vec<Pending>) {
        for pending in group {
            let answer = self.append_stream(&pending.stream).await;
            let _ = pending.reply.send(answer);
        }
    }
}

/// Answers every append of a group with `error`, which wrote none of them: the same error
/// for a full or closed pool (UNAVAILABLE either way), else a transient one that names it.
fn each_failed(group: Vec<Pending>, error: &sqlx::Error) {
    for pending in group {
        let error = match error {
            sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
            other => sqlx::Error::Io(std::io::Error::other(format!("a group's transaction failed: {other}"))),
        };
        let _ = pending.reply.send(Err(StoreError::Database(error)));
    }
}

/// The writer's turn, taken by an append written alone. Given back when that append is
/// done (or its caller went away): to the appends that queued meanwhile, written by a task
/// of their own, or idle.
struct Turn<'a>(&'a SqliteStore);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.group.state();
        if state.queue.is_empty() {
            state.busy = false;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.0.clone().write_groups());
        } else {
            // No runtime to write them on (it is gone): dropping their replies tells them.
            state.queue.clear();
            state.busy = false;
        }
    }
}

/// The group task's hold on the writer. Should the task end early (a panic, the runtime
/// shutting down), it frees the writer and drops the queued replies, which tells their
/// callers, rather than leave every later append queued behind a task that is gone.
struct Writing<'a> {
    store: &'a SqliteStore,
    done: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.store.group.state();
            state.queue.clear();
            state.busy = false;
        }
    }
}

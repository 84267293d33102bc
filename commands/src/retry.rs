//! Jittered exponential backoff between attempts after a conflict with another process
//! (backon's schedule; the loops decide themselves what to do between attempts).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

pub(crate) struct Backoff {
    delays: ExponentialBackoff,
}

impl Backoff {
    /// 1 ms, doubling, capped at 100 ms, each with random jitter, for as long as it takes.
    pub(crate) fn new() -> Self {
        let delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(100))
            .with_jitter()
            .without_max_times()
            .build();
        Backoff { delays }
    }

    /// Sleeps the next pause, never past `deadline`.
    pub(crate) async fn wait(&mut self, deadline: Instant) {
        let pause = self.delays.next().unwrap_or(Duration::from_millis(100));
        tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
    }
}

//! Jittered exponential backoff between attempts after a conflict with another process.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { attempt: 0 }
    }

    /// Sleeps a random pause (growing, capped at 100 ms), never past `deadline`.
    pub(crate) async fn wait(&mut self, deadline: Instant) {
        self.attempt += 1;
        let ceiling_ms = (1u64 << self.attempt.min(7)).min(100);
        let pause = Duration::from_millis(rand::rng().random_range(0..=ceiling_ms));
        tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
    }
}

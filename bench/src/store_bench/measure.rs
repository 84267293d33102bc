//! Driving concurrent writers and measuring what they did.

use std::time::{Duration, Instant};

use store::StoreError;

use super::{BoxError, StoreArgs};

/// What one write measurement saw.
#[derive(Clone, Default)]
pub(super) struct Measured {
    events: u64,
    elapsed: Duration,
    /// Per operation, sorted.
    latencies: Vec<Duration>,
}

impl Measured {
    pub(super) fn absorb(&mut self, other: Measured) {
        self.events += other.events;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    pub(super) fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    pub(super) fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index.min(self.latencies.len() - 1)]
    }
}

/// Runs `writers` concurrent loops of `op` (which returns the events it wrote): a warm-up,
/// then `measure` of counted operations.
pub(super) async fn drive<F, Fut>(writers: usize, warmup: Duration, measure: Duration, op: F) -> Result<Measured, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<u64, StoreError>> + Send + 'static,
{
    let start = Instant::now() + warmup;
    let end = start + measure;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut events = 0u64;
                let mut latencies = Vec::new();
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let wrote = op(writer).await?;
                    if began >= start {
                        latencies.push(began.elapsed());
                        events += wrote;
                    }
                }
                Ok::<_, StoreError>((events, latencies))
            })
        })
        .collect();
    let mut measured = Measured {
        events: 0,
        elapsed: measure,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (events, latencies) = task.await??;
        measured.events += events;
        measured.latencies.extend(latencies);
    }
    // The last operations may end a little after `end`: count the time they took.
    measured.elapsed = Instant::now().saturating_duration_since(start).max(measure);
    Ok(measured)
}

/// Measures the store and the baseline in alternating slices (`--rounds` of each, the order
/// swapped every round), so that other load on the machine falls on both alike.
pub(super) async fn compare<O, OF, R, RF>(writers: usize, args: &StoreArgs, ours: O, raw: R) -> Result<(Measured, Measured), BoxError>
where
    O: Fn(usize) -> OF + Send + Sync + Clone + 'static,
    OF: std::future::Future<Output = Result<u64, StoreError>> + Send + 'static,
    R: Fn(usize) -> RF + Send + Sync + Clone + 'static,
    RF: std::future::Future<Output = Result<u64, StoreError>> + Send + 'static,
{
    let rounds = args.rounds.max(1);
    let slice = Duration::from_secs_f64(args.seconds / rounds as f64);
    let warmup = Duration::from_secs_f64(args.warmup);
    let mut ours_total = Measured::default();
    let mut raw_total = Measured::default();
    for round in 0..rounds {
        let warm = if round == 0 { warmup } else { Duration::ZERO };
        if round % 2 == 0 {
            raw_total.absorb(drive(writers, warm, slice, raw.clone()).await?);
            ours_total.absorb(drive(writers, warm, slice, ours.clone()).await?);
        } else {
            ours_total.absorb(drive(writers, warm, slice, ours.clone()).await?);
            raw_total.absorb(drive(writers, warm, slice, raw.clone()).await?);
        }
    }
    ours_total.latencies.sort();
    raw_total.latencies.sort();
    Ok((ours_total, raw_total))
}

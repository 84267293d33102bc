//! Measuring: closed-loop writers, the live tail, and medians over passes.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use super::BoxError;

/// Runs `writers` concurrent loops of `op(writer)` (which returns the events it wrote):
/// `warmup` unmeasured, then `measure`. Returns events per second in the measured window.
pub(super) async fn drive<F, Fut>(writers: usize, warmup: Duration, measure: Duration, op: F) -> Result<f64, BoxError>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<u64, BoxError>> + Send + 'static,
{
    let start = Instant::now() + warmup;
    let end = start + measure;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut events = 0u64;
                while Instant::now() < end {
                    let began = Instant::now();
                    let wrote = op(writer).await?;
                    if began >= start {
                        events += wrote;
                    }
                }
                Ok::<_, BoxError>(events)
            })
        })
        .collect();
    let mut events = 0;
    for task in tasks {
        events += task.await??;
    }
    // The last operations may end a little after `end`: count the time they took.
    let elapsed = Instant::now().saturating_duration_since(start).max(measure);
    Ok(events as f64 / elapsed.as_secs_f64())
}

/// How long a tail waits, after the writers stopped, for committed events it has not
/// received yet before it counts them as skipped.
const LATE: Duration = Duration::from_secs(10);

/// What a tail of the global log saw while writers appended.
#[derive(Default, Debug, Clone, Copy)]
pub(super) struct Tailed {
    /// Distinct events the tail received while the writers ran, per second.
    pub rate: f64,
    /// Events committed after the tail started that it never received.
    pub skipped: u64,
    /// Events received more than once.
    pub duplicated: u64,
}

/// Follows the log from `after` (`page(after)` returns the positions of the next page) while
/// `writers` loops of `op` append for `measure`, then until it has caught up with
/// `committed()` (every position written after `after`, read when the writers are done) or
/// waited [`LATE`] for it.
pub(super) async fn tail<P, PF, F, Fut, C, CF>(
    writers: usize,
    measure: Duration,
    after: i64,
    page: P,
    op: F,
    committed: C,
) -> Result<Tailed, BoxError>
where
    P: Fn(i64) -> PF,
    PF: Future<Output = Result<Vec<i64>, BoxError>>,
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<u64, BoxError>> + Send + 'static,
    C: FnOnce() -> CF,
    CF: Future<Output = Result<Vec<i64>, BoxError>>,
{
    let writing = tokio::spawn(drive(writers, Duration::ZERO, measure, op));
    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut duplicated = 0u64;
    let mut checkpoint = after;
    let mut in_window = 0usize;
    // Once the writers are done: when that was, and every position they committed.
    let mut done: Option<(Instant, Vec<i64>)> = None;
    let mut committed = Some(committed);
    loop {
        let positions = page(checkpoint).await?;
        for &p in &positions {
            if !seen.insert(p) {
                duplicated += 1;
            }
            checkpoint = checkpoint.max(p);
        }
        if done.is_none() && writing.is_finished() {
            in_window = seen.len();
            let all = match committed.take() {
                Some(committed) => committed().await?,
                None => Vec::new(),
            };
            done = Some((Instant::now(), all));
        }
        match &done {
            // Caught up: an empty page, and every committed event received. A late event
            // (its page waited in vain for an older transaction elsewhere in the cluster) is
            // waited for up to `LATE`; only one still missing then, behind the checkpoint,
            // counts as skipped.
            Some((since, all)) if positions.is_empty() => {
                if all.iter().all(|p| seen.contains(p)) || since.elapsed() > LATE {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None if positions.is_empty() => tokio::time::sleep(Duration::from_millis(1)).await,
            _ => {}
        }
    }
    let (finished, all) = done.unwrap_or_else(|| (Instant::now(), Vec::new()));
    let window = finished.duration_since(started);
    writing.await??;
    let skipped = all.iter().filter(|p| !seen.contains(p)).count() as u64;
    Ok(Tailed {
        rate: in_window as f64 / window.as_secs_f64(),
        skipped,
        duplicated,
    })
}

/// One side's value per pass.
#[derive(Default, Debug, Clone)]
pub(super) struct Samples(pub Vec<f64>);

impl Samples {
    pub(super) fn median(&self) -> f64 {
        median(&mut self.0.clone())
    }

    pub(super) fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub(super) fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The median of `values`.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Unmeasured loads before each pass's measured ones (they warm the caches).
const WARM_LOADS: usize = 3;

/// W3's measurement: in each pass, `rounds` loads by each side after [`WARM_LOADS`], the
/// side that goes first alternating every load; each load (returning how many events it
/// loaded) must load `expected` events. One sample per pass: the median load in ms.
pub(super) async fn loads<O, OF, B, BF>(passes: usize, rounds: usize, expected: usize, ours: O, base: B) -> Result<(Samples, Samples), BoxError>
where
    O: Fn() -> OF,
    OF: Future<Output = Result<usize, BoxError>>,
    B: Fn() -> BF,
    BF: Future<Output = Result<usize, BoxError>>,
{
    async fn timed(load: impl Future<Output = Result<usize, BoxError>>) -> Result<(f64, usize), BoxError> {
        let started = Instant::now();
        let n = load.await?;
        Ok((started.elapsed().as_secs_f64() * 1e3, n))
    }
    let (mut ours_samples, mut base_samples) = (Samples::default(), Samples::default());
    for pass in 0..passes {
        let (mut ours_ms, mut base_ms) = (Vec::new(), Vec::new());
        for round in 0..rounds + WARM_LOADS {
            let ((o, on), (b, bn)) = if store_first(pass + round) {
                let o = timed(ours()).await?;
                (o, timed(base()).await?)
            } else {
                let b = timed(base()).await?;
                (timed(ours()).await?, b)
            };
            if on != expected || bn != expected {
                return Err(format!("loaded {on} events with the first and {bn} with the second, expected {expected}").into());
            }
            if round >= WARM_LOADS {
                ours_ms.push(o);
                base_ms.push(b);
            }
        }
        ours_samples.0.push(median(&mut ours_ms));
        base_samples.0.push(median(&mut base_ms));
    }
    Ok((ours_samples, base_samples))
}

/// Pass `pass` runs the store first when odd, the baseline first when even.
pub(super) fn store_first(pass: usize) -> bool {
    pass % 2 == 1
}

/// Runs `store` and `baseline` once per pass, alternating which goes first; one sample each.
pub(super) async fn alternate<S, SF, B, BF>(passes: usize, store: S, baseline: B) -> Result<(Samples, Samples), BoxError>
where
    S: Fn() -> SF,
    SF: Future<Output = Result<f64, BoxError>>,
    B: Fn() -> BF,
    BF: Future<Output = Result<f64, BoxError>>,
{
    let (mut ours, mut base) = (Samples::default(), Samples::default());
    for pass in 0..passes {
        if store_first(pass) {
            ours.0.push(store().await?);
            base.0.push(baseline().await?);
        } else {
            base.0.push(baseline().await?);
            ours.0.push(store().await?);
        }
    }
    Ok((ours, base))
}

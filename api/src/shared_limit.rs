//! Rate limits shared by every node (`--rate-limit-redis-url`): the same GCRA as the
//! in-process limiter (governor: one request per `t`, bursts of `b`, so `tau = t * (b - 1)`),
//! computed atomically in Redis by one Lua script (sent once, then run by its SHA1), on
//! Redis's clock so that nodes' clocks do not matter. One key per caller,
//! `<namespace>:ratelimit:<caller>`, holding the caller's theoretical arrival time in µs;
//! it expires when the caller's burst is full again, so idle callers cost nothing.
//!
//! When Redis fails (down, slow past [`TIMEOUT`]), the caller's limiter falls back to the
//! process's own limiter (see `limits`) and skips Redis for [`COOL_DOWN`]: an outage of
//! the shared store neither stops the shop nor lifts the limits, it only makes them
//! per-node again for a while. Counted in `cartsource_rate_limit_store_fallbacks_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Longest a rate-limit decision may wait for Redis before the local limiter decides.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// How long after a failure the local limiter decides alone before Redis is tried again.
pub const COOL_DOWN: Duration = Duration::from_secs(1);

/// GCRA. KEYS[1]: the caller's key; ARGV[1]: `t` (µs per request), ARGV[2]: `tau` (µs).
/// Returns 0 when the request may pass (and records it), else the µs to wait. Times are
/// integral µs since the epoch (below 2^53, exact as Lua numbers), written with `%.0f`
/// because Lua's `tostring` keeps only 14 digits.
const GCRA: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - tau
if now < earliest then
  return earliest - now
end
local next_tat = math.max(tat, now) + t
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1)
return 0
";

#[derive(Debug, thiserror::Error)]
pub enum SharedLimitError {
    #[error("the rate-limit store is not a valid Redis URL: {0}")]
    Url(redis::RedisError),
    #[error("the rate-limit store failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the rate-limit store did not answer within {TIMEOUT:?}")]
    Timeout,
    #[error("the rate-limit store failed recently; deciding locally")]
    CoolingDown,
}

/// The shared limiter: a lazily connecting, reconnecting connection and the script.
#[derive(Clone)]
pub struct SharedLimit {
    connection: ConnectionManager,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    t_micros: u64,
    tau_micros: u64,
    /// Milliseconds after `epoch` until which Redis is not asked (0: ask).
    skip_until: Arc<AtomicU64>,
    epoch: Instant,
}

impl SharedLimit {
    /// Does not connect: the first request does, so a server starts while Redis is down.
    pub fn new(url: &str, namespace: &str, per_second: u32, burst: u32) -> Result<Self, SharedLimitError> {
        let client = redis::Client::open(url).map_err(SharedLimitError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let t_micros = 1_000_000 / u64::from(per_second.max(1));
        Ok(SharedLimit {
            connection,
            script: Arc::new(redis::Script::new(GCRA)),
            prefix: format!("{namespace}:ratelimit:").into(),
            t_micros,
            tau_micros: t_micros * u64::from(burst.max(1) - 1),
            skip_until: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    /// `Ok(None)` to go on, `Ok(Some(wait))` when the caller must wait, or why Redis could
    /// not decide (then the caller decides locally).
    pub async fn check(&self, caller: &str) -> Result<Option<Duration>, SharedLimitError> {
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.skip_until.load(Ordering::Relaxed) {
            return Err(SharedLimitError::CoolingDown);
        }
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(format!("{}{caller}", self.prefix));
        invocation.arg(self.t_micros).arg(self.tau_micros);
        let answer = match tokio::time::timeout(TIMEOUT, invocation.invoke_async::<u64>(&mut connection)).await {
            Ok(Ok(wait)) => return Ok((wait > 0).then(|| Duration::from_micros(wait))),
            Ok(Err(e)) => SharedLimitError::Redis(e),
            Err(_) => SharedLimitError::Timeout,
        };
        let until = self.epoch.elapsed() + COOL_DOWN;
        if self.skip_until.swap(until.as_millis() as u64, Ordering::Relaxed) <= now {
            // Once per outage (and again after each cool-down), not once per request.
            tracing::warn!(error = %answer, "rate limits are per node until the rate-limit store answers again");
        }
        Err(answer)
    }
}

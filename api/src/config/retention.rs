//! The retention policy (#15): which carts the worker role archives, and how fast.

use std::time::Duration;

use clap::Args;

use super::parse_duration;

/// Archiving of abandoned carts (see the README's "Data lifecycle"). Runs in the worker role
/// (worker or all), in the one process holding the `retention` lease.
#[derive(Debug, Clone, Args)]
pub struct RetentionOptions {
    /// Open carts (never checked out) with no event for this long are archived: their events
    /// leave the hot table, the cart answers ARCHIVED. `off` never archives.
    #[arg(long, env = "RETENTION_IDLE_FOR", default_value = "30d", value_parser = parse_idle_for)]
    pub retention_idle_for: IdleFor,
    /// Carts archived per batch (each in its own short transaction).
    #[arg(long, env = "RETENTION_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub retention_batch_size: u32,
    /// Pause between two batches.
    #[arg(long, env = "RETENTION_PAUSE", default_value = "1s", value_parser = parse_duration)]
    pub retention_pause: Duration,
    /// Pause between two sweeps, once no candidate is left.
    #[arg(long, env = "RETENTION_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub retention_interval: Duration,
}

/// `--retention-idle-for`: a period, or `None` for `off`. (A newtype: clap reads an
/// `Option` field as an optional flag.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleFor(pub Option<Duration>);

fn parse_idle_for(text: &str) -> Result<IdleFor, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(IdleFor(None));
    }
    match parse_duration(text)? {
        d if d.is_zero() => Err("--retention-idle-for must be above zero (or `off`)".to_owned()),
        d => Ok(IdleFor(Some(d))),
    }
}

/// The policy's own defaults (`projections::RetentionConfig`), which the flags' defaults
/// spell as text (a test checks that they agree).
impl Default for RetentionOptions {
    fn default() -> Self {
        let policy = projections::RetentionConfig::default();
        RetentionOptions {
            retention_idle_for: IdleFor(Some(policy.idle_for)),
            retention_batch_size: u32::try_from(policy.batch_size).unwrap_or(u32::MAX),
            retention_pause: policy.pause,
            retention_interval: policy.interval,
        }
    }
}

impl RetentionOptions {
    /// The policy for the worker role; `None` when archiving is off.
    pub fn policy(&self) -> Option<projections::RetentionConfig> {
        Some(projections::RetentionConfig {
            idle_for: self.retention_idle_for.0?,
            batch_size: self.retention_batch_size as usize,
            pause: self.retention_pause,
            interval: self.retention_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        retention: RetentionOptions,
    }

    #[test]
    fn the_policy_defaults_to_thirty_days_and_can_be_turned_off() {
        let cli = Cli::try_parse_from(["x"]).expect("parse");
        assert_eq!(cli.retention.policy().map(|p| p.idle_for), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(cli.retention.policy(), RetentionOptions::default().policy());
        let cli = Cli::try_parse_from(["x", "--retention-idle-for", "90d", "--retention-batch-size", "10"]).expect("parse");
        let policy = cli.retention.policy().expect("on");
        assert_eq!((policy.idle_for, policy.batch_size), (Duration::from_secs(90 * 86_400), 10));
        assert!(Cli::try_parse_from(["x", "--retention-idle-for", "off"])
            .expect("parse")
            .retention
            .policy()
            .is_none());
        assert!(Cli::try_parse_from(["x", "--retention-idle-for", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--retention-batch-size", "0"]).is_err());
    }
}

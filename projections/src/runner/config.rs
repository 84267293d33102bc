//! How the workers of a process are set up: batch sizes, intervals, the bus, which workers.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::leader::LeaseTimings;
use crate::model::Model;
use crate::publisher::BusConfig;
use crate::reactors::Reactor;

#[derive(Clone, Debug)]
pub struct ProjectionsConfig {
    /// Run the fulfilment and inventory reactors (role worker/all).
    pub run_reactors: bool,
    /// Publish every event to NATS JetStream at this URL.
    pub nats_url: Option<String>,
    /// JetStream stream and subject prefix (tests use their own).
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    /// Names this process in leases and in the status.
    pub worker_name: String,
    /// Events per live batch.
    pub batch_size: usize,
    /// Events per rebuild batch (rebuilds favour throughput).
    pub rebuild_batch_size: usize,
    /// Events per reactor or publisher batch (each event is a command or a publish).
    pub reactor_batch_size: usize,
    /// A worker reading pages polls this often even without a doorbell (a lost
    /// notification only delays); a worker following the live feed checks its lease this
    /// often and re-reads its checkpoint row every `follow::RECHECK_TICKS` of these, to see
    /// requests made by other processes.
    pub poll_interval: Duration,
    /// How long a lease lasts unrenewed and how often it is renewed (and a standby tries to
    /// take an expired one): a frozen or dead leader is replaced within about
    /// `duration + heartbeat`.
    pub lease: LeaseTimings,
    /// A streaming replica of the store's Postgres database: the read models' queries, and
    /// the checkpoints their `wait_for` reads, go there (see [`crate::ReadModels`]). The
    /// workers, the feed and every write stay on the primary.
    pub read_replica: Option<sqlx::PgPool>,
    /// Run the retention job (`retention`) under its own lease; `None`: never archive.
    pub retention: Option<crate::RetentionConfig>,
}

impl Default for ProjectionsConfig {
    fn default() -> Self {
        // The host's name, so that an operator can tell which host leads (`HOSTNAME` wins
        // when it is set, as in containers).
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        ProjectionsConfig {
            run_reactors: true,
            nats_url: None,
            nats_stream: "CARTSOURCE".to_owned(),
            nats_subject_prefix: "cartsource".to_owned(),
            worker_name: format!("{host}-{}", std::process::id()),
            batch_size: 500,
            rebuild_batch_size: 5_000,
            reactor_batch_size: 100,
            poll_interval: store::live::POLL_INTERVAL,
            lease: LeaseTimings::default(),
            read_replica: None,
            retention: None,
        }
    }
}

impl ProjectionsConfig {
    pub(super) fn bus(&self) -> Option<BusConfig> {
        self.nats_url.as_ref().map(|url| BusConfig {
            url: url.clone(),
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
            ..BusConfig::new(url.clone())
        })
    }

    /// The workers this configuration runs.
    pub(super) fn workers(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = Model::ALL.into_iter().map(Kind::Model).collect();
        if self.run_reactors {
            kinds.extend(Reactor::ALL.into_iter().map(Kind::Reactor));
        }
        if let Some(bus) = self.bus() {
            kinds.push(Kind::Publisher(Arc::new(bus)));
        }
        kinds
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::ProjectionsConfig;

    #[test]
    fn the_worker_name_names_the_host_and_the_process() {
        let host = match std::env::var("HOSTNAME") {
            Ok(h) if !h.is_empty() => h,
            _ => std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned(),
        };
        assert_eq!(ProjectionsConfig::default().worker_name, format!("{host}-{}", std::process::id()));
    }
}

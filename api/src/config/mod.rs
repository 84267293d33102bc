//! Configuration from flags and environment, in one place (clap derive + `env`).
//!
//! `Config::default()` is the documented defaults without reading the environment, so
//! tests that set `DATABASE_URL` for the store helpers do not leak it into a server.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod personal_data;
mod retention;

pub use personal_data::{PersonalDataConfig, MASTER_KEY_FILE};
pub use retention::{IdleFor, RetentionOptions};

#[derive(Debug, Parser)]
#[command(
    name = "cartsource",
    version,
    about = "An event-sourced shopping cart with a GraphQL API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `cartsource` with no subcommand serves.
    #[command(flatten)]
    pub serve: Config,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP and WebSocket, run the workers (the default).
    Serve(Box<Config>),
    /// Print a JWT signed with the configured secret (development: the generated one in the data directory).
    Token(TokenArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The customer id (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// `customer` or `admin`.
    #[arg(long, default_value = "customer", value_parser = ["customer", "admin"])]
    pub role: String,
    /// Lifetime, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub secret: SecretConfig,
}

/// What both `serve` and `token` need to find the signing secret.
#[derive(Debug, Clone, Args)]
pub struct SecretConfig {
    /// Where the embedded database and the generated development secret live.
    #[arg(long, env = "CARTSOURCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HS256 signing secret for tokens; required in production.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `production` refuses to start without JWT_SECRET and never seeds.
    #[arg(long = "env", env = "CARTSOURCE_ENV", value_enum, default_value = "development")]
    pub environment: Environment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

/// What this process runs: the API, the projection workers and reactors, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Api,
    Worker,
    All,
}

impl Role {
    /// The role as the logs and flags spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::All => "all",
        }
    }
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }
    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Event store: postgres://... or sqlite:... (default: SQLite file in --data-dir).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// How long start-up waits for PostgreSQL before it says why it cannot connect.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Connections of the event store's PostgreSQL pool: commands, reads, read-model
    /// queries and (in a worker) projection batches share it. The live feed's listener and
    /// the notifier have one each on top, and a worker one per consumer lock.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    #[command(flatten)]
    pub secret: SecretConfig,
    /// Address to serve HTTP on (the worker role serves only the probes and metrics).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: String,
    /// Also publish every event to NATS JetStream.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    #[arg(long, env = "CARTSOURCE_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Log filter, e.g. `info` or `api=debug,sqlx=warn`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Do not register the demo catalog on the first start in development.
    #[arg(long, env = "CARTSOURCE_NO_SEED")]
    pub no_seed: bool,
    /// Front-end origins allowed by CORS, comma separated (`*` for any; none by default).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// Serve the storefront (`/`) and the admin console (`/admin`) in production too
    /// (development always serves them).
    #[arg(long, env = "STOREFRONT")]
    pub storefront: bool,
    #[command(flatten)]
    pub exposure: ExposureConfig,
    #[command(flatten)]
    pub leases: LeaseConfig,
    #[command(flatten)]
    pub bus_names: BusNames,
    #[command(flatten)]
    pub read_replica: ReadReplicaConfig,
    #[command(flatten)]
    pub personal_data: PersonalDataConfig,
    #[command(flatten)]
    pub retention: RetentionOptions,
}

/// Where the publisher writes in JetStream (with --nats-url); several deployments, or
/// tests, can share one NATS server with names of their own.
#[derive(Debug, Clone, Args)]
pub struct BusNames {
    /// The JetStream stream (created when missing).
    #[arg(long, env = "NATS_STREAM", default_value = "CARTSOURCE")]
    pub nats_stream: String,
    /// Subjects are `<prefix>.<category>.<EventType>`.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "cartsource")]
    pub nats_subject_prefix: String,
}

impl Default for BusNames {
    fn default() -> Self {
        BusNames {
            nats_stream: "CARTSOURCE".into(),
            nats_subject_prefix: "cartsource".into(),
        }
    }
}

/// Abuse limits; the defaults suit one small shop.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time a request may take before it is answered with an error.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Requests per second allowed to one caller (token subject, or IP without a token).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 50)]
    pub rate_limit_per_second: u32,
    /// Requests one caller may send at once above the steady rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,
    /// A WebSocket must send connection_init within this time.
    #[arg(long, env = "WS_INIT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_init_timeout: Duration,
    /// Subscriptions one WebSocket may hold at once.
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS", default_value_t = 25)]
    pub ws_max_subscriptions: usize,
    /// WebSockets this process holds at once.
    #[arg(long, env = "WS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub ws_max_connections: usize,
    /// Interval of the server's keep-alive pings; a peer silent for three intervals is dropped.
    #[arg(long, env = "WS_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    pub ws_keepalive: Duration,
    /// How long shutdown waits for in-flight requests and WebSockets.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// Leadership of the workers on Postgres (see the `projections` crate's `leader`).
#[derive(Debug, Clone, Args)]
pub struct LeaseConfig {
    /// A worker process that has not renewed its leases for this long (killed, frozen, cut
    /// off) is replaced by a standby, at most one heartbeat later. Also how long any
    /// connection may sit idle inside a transaction before the server ends it.
    #[arg(long, env = "LEASE_DURATION", default_value = "3s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often a leader renews its leases and a standby tries to take expired ones;
    /// shorter than --lease-duration.
    #[arg(long, env = "LEASE_HEARTBEAT", default_value = "1s", value_parser = parse_duration)]
    pub lease_heartbeat: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            lease_duration: Duration::from_secs(3),
            lease_heartbeat: Duration::from_secs(1),
        }
    }
}

impl LeaseConfig {
    /// The timings, when the heartbeat comes often enough to keep a lease.
    pub fn timings(&self) -> Result<projections::leader::LeaseTimings, String> {
        if self.lease_heartbeat.is_zero() || self.lease_heartbeat >= self.lease_duration {
            return Err(format!(
                "--lease-heartbeat ({:?}) must be shorter than --lease-duration ({:?}) and above zero",
                self.lease_heartbeat, self.lease_duration
            ));
        }
        Ok(projections::leader::LeaseTimings {
            duration: self.lease_duration,
            heartbeat: self.lease_heartbeat,
        })
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            rate_limit_per_second: 50,
            rate_limit_burst: 200,
            ws_init_timeout: Duration::from_secs(10),
            ws_max_subscriptions: 25,
            ws_max_connections: 10_000,
            ws_keepalive: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl Default for SecretConfig {
    fn default() -> Self {
        SecretConfig {
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            environment: Environment::Development,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            connect_timeout: Duration::from_secs(5),
            database_pool_size: 10,
            secret: SecretConfig::default(),
            listen_addr: "127.0.0.1:8080".into(),
            nats_url: None,
            role: Role::All,
            log: "info".into(),
            log_format: LogFormat::Pretty,
            no_seed: false,
            cors_origins: Vec::new(),
            limits: LimitsConfig::default(),
            storefront: false,
            leases: LeaseConfig::default(),
            bus_names: BusNames::default(),
            read_replica: ReadReplicaConfig::default(),
            exposure: ExposureConfig::default(),
            personal_data: PersonalDataConfig::default(),
            retention: RetentionOptions::default(),
        }
    }
}

impl Config {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.secret.data_dir.join("cartsource.db").display()))
    }

    pub fn is_production(&self) -> bool {
        self.secret.environment == Environment::Production
    }

    /// The web pages: always in development, in production only with `--storefront`.
    pub fn serves_pages(&self) -> bool {
        !self.is_production() || self.storefront
    }

    /// Seeding happens only in development, and not when turned off.
    pub fn seeds(&self) -> bool {
        !self.is_production() && !self.no_seed && self.role.runs_workers()
    }
}

// ------------------------------------------------------------------ exposure (production hardening)

/// What the server shows to the network beyond the contract: GraphiQL, introspection,
/// where `/metrics` listens, and the store that makes rate limits shared between nodes.
#[derive(Debug, Clone, Args)]
pub struct ExposureConfig {
    /// Serve GraphiQL (`GET /graphql` in a browser) in production too; implies
    /// --introspection, without which GraphiQL cannot load the schema. Development always
    /// serves it.
    #[arg(long, env = "GRAPHIQL")]
    pub graphiql: bool,
    /// Answer introspection (`__schema`, `__type`) in production too, e.g. for code
    /// generators. Development always does.
    #[arg(long, env = "INTROSPECTION")]
    pub introspection: bool,
    /// Serve `/metrics` only on this (internal) address, e.g. `10.0.0.5:9100`, instead of
    /// on the public one. The probes stay on --listen-addr.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Redis holding the rate limits, so that a caller's allowance holds across all nodes
    /// (redis://host:6379/0). Without it each process limits on its own.
    #[arg(long, env = "RATE_LIMIT_REDIS_URL", hide_env_values = true)]
    pub rate_limit_redis_url: Option<String>,
    /// Prefix of the rate-limit keys in Redis: nodes sharing it share allowances.
    #[arg(long, env = "RATE_LIMIT_NAMESPACE", default_value = "cartsource")]
    pub rate_limit_namespace: String,
}

impl Default for ExposureConfig {
    fn default() -> Self {
        ExposureConfig {
            graphiql: false,
            introspection: false,
            metrics_addr: None,
            rate_limit_redis_url: None,
            rate_limit_namespace: "cartsource".into(),
        }
    }
}

impl Config {
    /// GraphiQL: always in development, in production only with `--graphiql`.
    pub fn serves_graphiql(&self) -> bool {
        !self.is_production() || self.exposure.graphiql
    }

    /// Introspection: always in development, in production with `--introspection` or
    /// `--graphiql`.
    pub fn allows_introspection(&self) -> bool {
        self.serves_graphiql() || self.exposure.introspection
    }
}

/// A duration as humantime reads it (`250ms`, `30s`, `15m`, `1h 30m`, `7d`), or a bare
/// number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 30s, 15m, 1h or 7d: {e}"))
}

// ------------------------------------------------------------------ read replica

/// A PostgreSQL streaming replica for the read models' queries (API roles; a worker-only
/// process does not use it). Commands, the event feed, subscriptions, history and the
/// workers stay on DATABASE_URL; `minPosition` waits until the replica has applied the
/// position.
#[derive(Debug, Clone, Default, Args)]
pub struct ReadReplicaConfig {
    /// A streaming replica of DATABASE_URL's database (postgres://...); not with SQLite.
    #[arg(long, env = "READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,
    /// Connections of the replica's pool (default: --database-pool-size).
    #[arg(long, env = "READ_DATABASE_POOL_SIZE", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub read_database_pool_size: Option<u32>,
}

#[cfg(test)]
mod tests;

//! The command line and its defaults, parsed as users type them.

use super::*;

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert!(parse_duration("1 fortnight").is_err());
    assert!(parse_duration("h").is_err());
}

#[test]
fn the_command_line_parses() {
    Cli::command_for_tests().debug_assert();
    let cli = Cli::try_parse_from(["cartsource", "token", "--sub", "alice", "--role", "admin", "--ttl", "2h"]).expect("parse");
    match cli.command {
        Some(Command::Token(args)) => {
            assert_eq!(args.sub, "alice");
            assert_eq!(args.role, "admin");
            assert_eq!(args.ttl, Duration::from_secs(7200));
        }
        other => panic!("expected token, got {other:?}"),
    }
    let cli = Cli::try_parse_from(["cartsource", "serve", "--role", "worker", "--log-format", "json", "--no-seed"]).expect("parse");
    match cli.command {
        Some(Command::Serve(config)) => {
            assert_eq!(config.role, Role::Worker);
            assert_eq!(config.log_format, LogFormat::Json);
            assert!(config.no_seed);
        }
        other => panic!("expected serve, got {other:?}"),
    }
    assert!(Cli::try_parse_from(["cartsource", "token", "--sub", "a", "--role", "root"]).is_err());
    match Cli::try_parse_from(["cartsource", "serve", "--database-pool-size", "25"])
        .expect("parse")
        .command
    {
        Some(Command::Serve(config)) => assert_eq!(config.database_pool_size, 25),
        other => panic!("expected serve, got {other:?}"),
    }
    assert!(Cli::try_parse_from(["cartsource", "serve", "--database-pool-size", "0"]).is_err());
    match Cli::try_parse_from(["cartsource", "serve", "--lease-duration", "10s", "--lease-heartbeat", "2s"])
        .expect("parse")
        .command
    {
        Some(Command::Serve(config)) => {
            let timings = config.leases.timings().expect("valid timings");
            assert_eq!((timings.duration, timings.heartbeat), (Duration::from_secs(10), Duration::from_secs(2)));
        }
        other => panic!("expected serve, got {other:?}"),
    }
    match Cli::try_parse_from([
        "cartsource",
        "serve",
        "--read-database-url",
        "postgres://r@replica/db",
        "--read-database-pool-size",
        "4",
    ])
    .expect("parse")
    .command
    {
        Some(Command::Serve(config)) => {
            assert_eq!(config.read_replica.read_database_url.as_deref(), Some("postgres://r@replica/db"));
            assert_eq!(config.read_replica.read_database_pool_size, Some(4));
        }
        other => panic!("expected serve, got {other:?}"),
    }
    let slow = LeaseConfig {
        lease_duration: Duration::from_secs(1),
        lease_heartbeat: Duration::from_secs(1),
    };
    assert!(slow.timings().is_err(), "a heartbeat as long as the lease cannot keep it");
}

#[test]
fn production_exposes_only_what_its_flags_turn_on() {
    let parse = |args: &[&str]| match Cli::try_parse_from([&["cartsource", "serve"], args].concat()).expect("parse").command {
        Some(Command::Serve(config)) => *config,
        other => panic!("expected serve, got {other:?}"),
    };
    let development = parse(&[]);
    assert!(development.serves_graphiql() && development.allows_introspection());
    assert_eq!(development.exposure.metrics_addr, None);
    let bare = parse(&["--env", "production"]);
    assert!(!bare.serves_graphiql() && !bare.allows_introspection());
    let tools = parse(&["--env", "production", "--introspection"]);
    assert!(!tools.serves_graphiql() && tools.allows_introspection());
    let graphiql = parse(&["--env", "production", "--graphiql"]);
    assert!(
        graphiql.serves_graphiql() && graphiql.allows_introspection(),
        "GraphiQL needs introspection"
    );
    let shared = parse(&[
        "--metrics-addr",
        "10.0.0.5:9100",
        "--rate-limit-redis-url",
        "redis://cache:6379/0",
        "--rate-limit-namespace",
        "shop-eu",
    ]);
    assert_eq!(shared.exposure.metrics_addr.as_deref(), Some("10.0.0.5:9100"));
    assert_eq!(shared.exposure.rate_limit_redis_url.as_deref(), Some("redis://cache:6379/0"));
    assert_eq!(shared.exposure.rate_limit_namespace, "shop-eu");
    assert_eq!(development.exposure.rate_limit_namespace, ExposureConfig::default().rate_limit_namespace);
}

impl Cli {
    fn command_for_tests() -> clap::Command {
        <Cli as clap::CommandFactory>::command()
    }
}

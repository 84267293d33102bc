use std::process::ExitCode;

use api::config::{Cli, Command, TokenArgs};
use clap::Parser;

/// jemalloc instead of the system allocator: after 1,000 WebSocket subscriptions closed,
/// glibc malloc kept their memory (RSS stayed at twice the idle figure; mimalloc did the
/// same); jemalloc's background thread returns pages unused for a second to the system.
/// Measured with `scripts/ws-memory.sh` and the bench's live workloads.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (the `_rjem_` prefix is tikv-jemallocator's).
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

/// Hands a worker thread's cache of freed blocks back to jemalloc when the thread goes
/// idle, at most every 100 ms. Each thread keeps up to 200 freed blocks per size class for
/// its next allocations, and an idle thread never trims them: after 1,000 WebSocket
/// subscriptions closed, those caches held 6-9 MiB (RSS 3 s later +31% to +49% over idle;
/// with thread caches off, +11% to +14%). Flushed on park, the blocks go back to their
/// arenas, whose unused pages the background thread returns; under load a flush every
/// 100 ms costs nothing measurable.
#[cfg(not(target_env = "msvc"))]
fn release_thread_cache() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last.get().is_some_and(|at| now.duration_since(at) < Duration::from_millis(100)) {
            return;
        }
        last.set(Some(now));
        // SAFETY: "thread.tcache.flush" reads and writes nothing (all pointers null, length 0).
        unsafe {
            tikv_jemalloc_sys::mallctl(
                c"thread.tcache.flush".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
        }
    });
}

#[cfg(target_env = "msvc")]
fn release_thread_cache() {}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(release_thread_cache)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("cartsource: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", api::schema::sdl());
            ExitCode::SUCCESS
        }
        Some(Command::Token(args)) => token(&args),
        Some(Command::Serve(config)) => serve(*config).await,
        None => serve(cli.serve).await,
    }
}

fn token(args: &TokenArgs) -> ExitCode {
    let signed = api::server::resolve_secret(&args.secret).map_err(|e| e.to_string()).and_then(|secret| {
        let role = args.role.parse().map_err(|e: api::auth::AuthError| e.to_string())?;
        api::auth::issue_token(&args.sub, role, args.ttl, &secret).map_err(|e| e.to_string())
    });
    match signed {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cartsource token: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: api::Config) -> ExitCode {
    let telemetry = api::telemetry::init(&config);
    let code = serve_traced(config).await;
    // The exporter's shutdown blocks until the last spans are sent (bounded).
    if let Err(e) = tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        eprintln!("cartsource: flushing traces failed: {e}");
    }
    code
}

async fn serve_traced(config: api::Config) -> ExitCode {
    let signal = shutdown_signal();
    let app = match api::Application::build(&config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.local_addr() {
        Ok(addr) => {
            tracing::info!(%addr, role = config.role.as_str(), store = %store::connect::redact(&config.database_url()), "cartsource listening");
            if config.role.serves_api() && config.serves_graphiql() {
                tracing::info!("GraphiQL at http://{addr}/graphql");
            }
            if config.role.serves_api() && config.serves_pages() {
                tracing::info!("storefront at http://{addr}/, admin console at http://{addr}/admin");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the bound address"),
    }
    if let Some(Ok(addr)) = app.metrics_addr() {
        tracing::info!(%addr, "metrics at http://{addr}/metrics (not on the public address)");
    }
    if let Err(e) = app.run_until(signal).await {
        tracing::error!(error = %e, "server failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Resolves on ctrl-c or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM that arrives right after the server said it
/// listens must shut it down gracefully, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for ctrl-c");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let terminate = async {
            match terminate {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
        tracing::info!("shutdown signal received");
    }
}

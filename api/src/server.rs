//! The HTTP server: routes, middleware, start-up and graceful shutdown.
//!
//! Routes: `POST /graphql`; `GET /graphql` (GraphiQL for browsers, 405 otherwise);
//! `GET /graphql/ws` (subscriptions, see `ws`); `/graphql/assets/*` (GraphiQL's files);
//! `/healthz` (the process answers), `/readyz` (database reachable with its migrations,
//! projections started, not shutting down), `/metrics`; the pages (`/`, `/admin`, ...)
//! come from `web`. A worker-only process serves the probes and metrics alone.
//!
//! Production serves neither GraphiQL (its page and assets) nor introspection unless
//! asked (`--graphiql`, `--introspection`). With `--metrics-addr`, `/metrics` moves to a
//! second listener of its own (an internal address) and leaves the public one; both stop
//! together. Every response carries `X-Content-Type-Options: nosniff`.
//!
//! Every request gets an `x-request-id` (kept from the client or a new UUID), echoed in
//! the response and recorded on the request's span, which encloses the resolver, the
//! command and the store's append. A W3C `traceparent` makes that span part of the
//! caller's trace (`telemetry`).

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Executor;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId as HeaderRequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{self, Principal};
use crate::config::{Config, SecretConfig};
use crate::context::{ApiContext, RequestId};
use crate::error::ApiError;
use crate::http_response::{self, MediaType};
use crate::limits::{self, error_response, RateLimit, Refusal};
pub use crate::probes::Readiness;
use crate::probes::{metrics_routes, probe_routes};
use crate::telemetry::ReceivedTrace;
use crate::ws::{self, WsHub, WsSettings};
use crate::{metrics, playground, seed};
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("{holder} already serves the SQLite database in this directory (it holds {path}): stop it, or give this server its own --data-dir or DATABASE_URL")]
    Locked { path: String, holder: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("production mode needs JWT_SECRET (or --jwt-secret): refusing to start with a generated secret")]
    MissingSecret,
    #[error("JWT_SECRET must be at least 32 bytes in production")]
    WeakSecret,
    #[error(transparent)]
    Secret(#[from] auth::AuthError),
    #[error("cannot start the projections: {0}")]
    Projections(#[from] projections::ProjectionError),
    #[error("cannot seed the demo catalog: {0}")]
    Seed(#[from] seed::SeedError),
    #[error("{0}")]
    Leases(String),
    #[error("--read-database-url (READ_DATABASE_URL) needs a PostgreSQL event store: the embedded SQLite store has no replicas; remove it, or set DATABASE_URL to postgres://...")]
    ReplicaWithoutPostgres,
    #[error("cannot open the read replica: {0}")]
    ReadReplica(store::StoreError),
    #[error("{0}")]
    MasterKey(String),
    #[error(transparent)]
    RateLimitStore(#[from] crate::shared_limit::SharedLimitError),
}

/// The signing secret: `JWT_SECRET`, or in development the one generated once in the data directory.
pub fn resolve_secret(config: &SecretConfig) -> Result<Vec<u8>, StartError> {
    match &config.jwt_secret {
        Some(secret) if config.environment == crate::config::Environment::Production && secret.len() < 32 => Err(StartError::WeakSecret),
        Some(secret) if !secret.is_empty() => Ok(secret.as_bytes().to_vec()),
        _ if config.environment == crate::config::Environment::Production => Err(StartError::MissingSecret),
        _ => Ok(auth::load_or_create_secret(&config.data_dir)?.into_bytes()),
    }
}

/// Re-wraps, in the background, every data key wrapped by a previous master key (see the
/// `vault` crate); any process may do it, and repeating it is harmless.
fn rotate_master_key(vault: vault::Vault) {
    tokio::spawn(async move {
        match vault.rotate(100).await {
            Ok(count) => tracing::info!(count, "re-wrapped data keys with the current master key; the previous keys may go"),
            Err(e) => tracing::error!(error = %e, "master key rotation stopped; it runs again at the next start"),
        }
    });
}

/// What the GraphQL routes share.
#[derive(Clone)]
pub struct GraphqlState<E> {
    pub executor: E,
    pub secret: Arc<[u8]>,
    pub rate_limit: RateLimit,
    pub max_body_bytes: usize,
    /// Whether `GET /graphql` serves GraphiQL to browsers (and its assets are served).
    pub graphiql: bool,
}

/// The full router for the API role; tests may mount it over any schema.
pub fn graphql_routes<E: Executor>(state: GraphqlState<E>, hub: WsHub) -> Router {
    let executor = state.executor.clone();
    let graphiql = state.graphiql;
    let router = Router::new()
        .route("/graphql", get(graphql_get::<E>).post(graphql_post::<E>).with_state(state))
        .route("/graphql/ws", get(ws::upgrade::<E>).with_state((executor, hub)));
    if graphiql {
        router.route("/graphql/assets/{name}", get(playground::asset))
    } else {
        router
    }
}

/// The middleware every route gets: request ids, tracing, CORS and WebSocket origins,
/// timeout, body limit.
pub fn with_middleware(router: Router, config: &Config) -> Router {
    let mut router = router
        .layer(RequestBodyLimitLayer::new(config.limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.limits.request_timeout,
        ));
    let origins = crate::cors::Origins::new(&config.cors_origins, !config.is_production());
    router = router
        .layer(axum::middleware::from_fn_with_state(origins.clone(), crate::cors::check_websocket_origin))
        .layer(origins.layer());
    router
        .layer(axum::middleware::map_response(limits::graphql_shaped))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            let span =
                tracing::info_span!("request", otel.kind = "server", method = %request.method(), path = %request.uri().path(), request_id = %id);
            if let Some(received) = ReceivedTrace::from_headers(request.headers()) {
                // Err only when no layer exports spans.
                let _ = span.set_parent(received.context);
            }
            span
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn graphql_get<E>(State(state): State<GraphqlState<E>>, headers: HeaderMap) -> Response {
    if !state.graphiql {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadUserInput("send operations with POST (application/json); GraphiQL is turned off on this server".to_owned()),
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if playground::wants_html(&headers) {
        return playground::page(&headers);
    }
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ApiError::BadUserInput("GET /graphql serves GraphiQL to browsers; send operations with POST (application/json)".to_owned()),
    );
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

async fn graphql_post<E: Executor>(
    State(state): State<GraphqlState<E>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request_id: Option<axum::Extension<HeaderRequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let media = v.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("application/graphql-response+json")
    });
    if !json {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadUserInput("send the request body as application/json".to_owned()),
        );
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let principal = match auth::authenticate(authorization, &state.secret) {
        Ok(principal) => principal,
        Err(e) => {
            // Failed attempts count against the peer, so guessing costs like anything else.
            if let Err(limited) = state.rate_limit.check(&format!("ip:{}", peer.ip())).await {
                return limited.into_response();
            }
            let mut response = error_response(StatusCode::UNAUTHORIZED, e.into());
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            return response;
        }
    };
    let caller = match &principal {
        Some(p) => format!("sub:{}", p.id),
        None => format!("ip:{}", peer.ip()),
    };
    if let Err(limited) = state.rate_limit.check(&caller).await {
        return limited.into_response();
    }
    let bytes = match limits::read_body(body, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.into_response(),
    };
    let request = match parse_request(&bytes) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    let mut request = request;
    if let Some(principal) = principal {
        request = request.data::<Principal>(principal);
    }
    if let Some(axum::Extension(id)) = request_id {
        // A client-chosen id that is not a UUID is kept in the logs but not as correlation id.
        let id = id
            .header_value()
            .to_str()
            .ok()
            .and_then(|v| uuid::Uuid::parse_str(v).ok())
            .unwrap_or_else(uuid::Uuid::new_v4);
        request = request.data(RequestId(id));
    }
    if let Some(received) = ReceivedTrace::from_headers(&headers) {
        request = request.data(received);
    }
    http_response::graphql(state.executor.execute(request).await, MediaType::accepted(&headers))
}

/// One GraphQL request from a JSON body; batches and non-objects are refused.
fn parse_request(bytes: &[u8]) -> Result<async_graphql::Request, Refusal> {
    let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, ApiError::BadUserInput(message));
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("the request body is not valid JSON: {e}")))?;
    if value.is_array() {
        return Err(bad("batched requests are not supported: send one operation per request".to_owned()));
    }
    if !value.get("query").is_some_and(serde_json::Value::is_string) {
        return Err(bad("the request body must be a JSON object with a `query` string".to_owned()));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("the request body is not a GraphQL request: {e}")))
}

/// A server bound to its port (port 0 picks a free one), not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `--metrics-addr`: its listener and router.
    metrics: Option<(TcpListener, Router)>,
    shutdown: CancellationToken,
    hub: Option<WsHub>,
    projections: projections::Projections,
    grace: Duration,
    /// The SQLite directory's lock, held until the server has shut down.
    lock: Option<crate::instance_lock::InstanceLock>,
}

impl Application {
    /// Opens the store (migrations run), starts the projections for the role, seeds in
    /// development, builds the schema and binds.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        metrics::handle();
        crate::replica::check(config)?;
        // Before anything else, so a second server on the same SQLite file touches nothing.
        let lock = crate::instance_lock::lock(&config.database_url())?;
        let leases = config.leases.timings().map_err(StartError::Leases)?;
        let options = store::PgStoreOptions {
            connect_timeout: config.connect_timeout,
            max_connections: config.database_pool_size,
            // A process frozen inside a transaction must not hold back the feed or a
            // standby's takeover for longer than a lease.
            idle_in_transaction_timeout: Some(leases.duration),
            ..Default::default()
        };
        let db = store::open_with(&config.database_url(), options.clone()).await?;
        let replica = crate::replica::open(config, options).await?;
        // After the store opened: a failed start writes no development secret.
        let secret: Arc<[u8]> = resolve_secret(&config.secret)?.into();
        let generated_in = (!config.is_production()).then_some(config.secret.data_dir.as_path());
        let (master_key, previous_keys) = config.personal_data.master_keys(generated_in).map_err(StartError::MasterKey)?;
        let rotating = !previous_keys.is_empty();
        let vault = vault::Vault::new(db.keys(), master_key, previous_keys);
        if rotating {
            rotate_master_key(vault.clone());
        }
        if config.seeds() {
            seed::seed_if_empty(&db.store()).await?;
        }
        // The one live feed of this process: subscriptions and projection workers share it.
        let live = store::LiveFeed::start(db.store());
        let projections = if config.role.runs_workers() {
            let settings = projections::ProjectionsConfig {
                nats_url: config.nats_url.clone(),
                nats_stream: config.bus_names.nats_stream.clone(),
                nats_subject_prefix: config.bus_names.nats_subject_prefix.clone(),
                lease: leases,
                read_replica: replica,
                retention: config.retention.policy(),
                ..Default::default()
            };
            projections::Projections::start(db.clone(), settings, live.clone()).await?
        } else {
            projections::Projections::observer_reading_from(db.clone(), replica)
        };
        let shutdown = CancellationToken::new();
        let rate_limit = RateLimit::with_store(
            &config.limits,
            config.exposure.rate_limit_redis_url.as_deref(),
            &config.exposure.rate_limit_namespace,
        )?;
        tokio::spawn(rate_limit.clone().housekeeping(shutdown.clone()));
        let readiness = Readiness {
            store: db.store(),
            projections: projections.clone(),
            shutdown: shutdown.clone(),
        };

        let (router, hub) = if config.role.serves_api() {
            let mut context = ApiContext::with_live(db.clone(), projections.clone(), live, vault);
            // A command gives up (TIMEOUT) a little before the HTTP layer would, so the
            // client gets the command's own answer.
            context.command_budget = config.limits.request_timeout.mul_f64(0.9);
            context.store = metrics::MeteredStore::wrap(context.store.clone());
            let schema = crate::schema::build_schema_with(context, config.allows_introspection());
            let settings = WsSettings {
                init_timeout: config.limits.ws_init_timeout,
                max_subscriptions: config.limits.ws_max_subscriptions,
                keepalive: config.limits.ws_keepalive,
                max_message_bytes: config.limits.max_body_bytes,
            };
            let hub = WsHub::new(
                settings,
                config.limits.ws_max_connections,
                secret.clone(),
                rate_limit.clone(),
                shutdown.clone(),
            );
            let pages = crate::web::routes(config, secret.clone());
            let state = GraphqlState {
                executor: schema,
                secret,
                rate_limit,
                max_body_bytes: config.limits.max_body_bytes,
                graphiql: config.serves_graphiql(),
            };
            (graphql_routes(state, hub.clone()).merge(pages), Some(hub))
        } else {
            (Router::new(), None)
        };
        let mut router = router.merge(probe_routes(readiness.clone()));
        let metrics = match &config.exposure.metrics_addr {
            Some(addr) => Some((bind(addr).await?, with_middleware(metrics_routes(readiness), config))),
            None => {
                router = router.merge(metrics_routes(readiness));
                None
            }
        };
        let listener = bind(&config.listen_addr).await?;
        Ok(Application {
            listener,
            metrics,
            router: with_middleware(router, config),
            shutdown,
            hub,
            projections,
            grace: config.limits.shutdown_grace,
            lock,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on when `--metrics-addr` moved it (else `None`:
    /// it is on [`Self::local_addr`]).
    pub fn metrics_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.metrics.as_ref().map(|(listener, _)| listener.local_addr())
    }

    /// Cancelling it shuts the server down as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until `signal` resolves or the shutdown token is cancelled, then: stops
    /// accepting, finishes in-flight requests, closes WebSockets with a close frame, and
    /// stops the workers at a checkpoint; whatever is still running after the grace
    /// period is dropped.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Application {
            listener,
            metrics,
            router,
            shutdown,
            hub,
            projections,
            grace,
            lock,
        } = self;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = signal => trigger.cancel(),
                _ = trigger.cancelled() => {}
            }
        });
        // Without TCP_NODELAY, Nagle holds a small WebSocket frame while the previous one to
        // the same client waits for its (delayed) ACK: a subscriber that gets an event every
        // 20 ms saw each one up to 40 ms late.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY on a connection");
            }
        });
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        // The internal listener stops with the public one; if either fails, both stop.
        let serve_metrics = async {
            let Some((listener, router)) = metrics else { return Ok(()) };
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
        };
        let stop_on_error = |result: std::io::Result<()>| {
            if result.is_err() {
                shutdown.cancel();
            }
            result
        };
        let both = async {
            let (public, internal) = tokio::join!(async { stop_on_error(serve.into_future().await) }, async {
                stop_on_error(serve_metrics.await)
            });
            public.and(internal)
        };
        let served = tokio::select! {
            result = both => result,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        tracing::info!("stopped accepting; closing WebSockets");
        if let Some(hub) = hub {
            if tokio::time::timeout(grace, hub.closed()).await.is_err() {
                tracing::warn!("some WebSockets did not close in time");
            }
        }
        projections.shutdown().await;
        drop(lock);
        tracing::info!("shut down");
        served
    }
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    })
}

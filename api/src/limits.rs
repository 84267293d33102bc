//! Abuse limits around the GraphQL endpoint, each answered with a GraphQL-shaped body
//! (`{"errors":[{"message", "extensions":{"code"}}]}`) so clients parse one format.
//!
//! * Body size: `RequestBodyLimitLayer` (1 MiB by default). axum's own default limit does
//!   not cover async-graphql's extractor; our handler reads the body itself under the
//!   same limit, and [`graphql_shaped`] rewrites the layer's plain-text 413.
//! * Time: `TimeoutLayer` answers 503 with TIMEOUT after the request timeout (the work is
//!   dropped; commands give up a little earlier with their own TIMEOUT).
//! * Rate: a GCRA limiter (governor) keyed by the token's subject, or by the peer's IP
//!   for anonymous callers, answering HTTP 429 with RATE_LIMITED and `Retry-After`.
//!   Behind a reverse proxy every anonymous caller shares the proxy's IP: give them
//!   tokens or raise the limit. Each process limits on its own, so behind a load
//!   balancer a caller's allowance multiplies by the number of nodes, unless
//!   `--rate-limit-redis-url` makes the nodes share it (`shared_limit`; the process's
//!   own limiter decides while Redis cannot).
//! * CORS and WebSocket origins: see `cors`.
//!
//! Deliberate refusals: batched requests (a JSON array) are refused, because one HTTP
//! request would otherwise buy many operations past the rate limit; `GET /graphql`
//! executes nothing (mutations over GET invite CSRF, and we want no second code path
//! for queries): it serves GraphiQL to browsers and answers 405 to everyone else. POST
//! bodies must be `application/json`, which a cross-site HTML form cannot send.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;
use crate::error::ApiError;
use crate::shared_limit::{SharedLimit, SharedLimitError};

/// A whole GraphQL response made of one error, with an HTTP status.
pub fn error_response(status: StatusCode, error: ApiError) -> Response {
    let body = serde_json::to_vec(&error.into_response())
        .unwrap_or_else(|_| br#"{"errors":[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}"#.to_vec());
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// A request refused before execution: an HTTP status and the error to send.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: ApiError,
    /// Seconds to send as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, error: ApiError) -> Self {
        Refusal {
            status,
            error,
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status, self.error);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Rewrites the bare responses of tower-http's limit and timeout layers (413, 503 with a
/// non-JSON body) into GraphQL-shaped ones; everything else passes untouched.
pub async fn graphql_shaped(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error_response(StatusCode::PAYLOAD_TOO_LARGE, too_large()),
        StatusCode::SERVICE_UNAVAILABLE if response.headers().get(header::CONTENT_LENGTH).is_none_or(|v| v == "0") => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, ApiError::Timeout)
        }
        _ => response,
    }
}

pub fn too_large() -> ApiError {
    ApiError::BadUserInput("the request body is too large".to_owned())
}

/// Requests per second and burst; zeros mean one per second and a burst of the rate.
fn quota(limits: &LimitsConfig) -> (NonZeroU32, NonZeroU32) {
    let per_second = NonZeroU32::new(limits.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
    (per_second, NonZeroU32::new(limits.rate_limit_burst).unwrap_or(per_second))
}

/// The per-caller limiter: the process's own, or the nodes' shared one in Redis.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    shared: Option<SharedLimit>,
}

impl RateLimit {
    /// The process's own limiter.
    pub fn new(limits: &LimitsConfig) -> Self {
        let (per_second, burst) = quota(limits);
        RateLimit {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))),
            shared: None,
        }
    }

    /// Shared through Redis at `url` under `namespace` when given, with the same rate
    /// and burst (and the process's own limiter as the fallback).
    pub fn with_store(limits: &LimitsConfig, url: Option<&str>, namespace: &str) -> Result<Self, SharedLimitError> {
        let mut limit = RateLimit::new(limits);
        if let Some(url) = url {
            let (per_second, burst) = quota(limits);
            limit.shared = Some(SharedLimit::new(url, namespace, per_second.get(), burst.get())?);
        }
        Ok(limit)
    }

    /// `Ok` to go on, or the 429 to send.
    pub async fn check(&self, caller: &str) -> Result<(), Refusal> {
        let decided = match &self.shared {
            Some(shared) => shared.check(caller).await.map_err(|_| crate::metrics::rate_limit_fallback()).ok(),
            None => None,
        };
        let wait = match decided {
            Some(wait) => wait,
            None => self
                .limiter
                .check_key(&caller.to_owned())
                .err()
                .map(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        };
        match wait {
            None => Ok(()),
            Some(wait) => {
                crate::metrics::rate_limited();
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    error: ApiError::RateLimited,
                    retry_after: Some(seconds.max(1)),
                })
            }
        }
    }

    /// Forgets callers whose buckets are full again, so the key map stays small.
    pub async fn housekeeping(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    self.limiter.retain_recent();
                    self.limiter.shrink_to_fit();
                }
            }
        }
    }
}

/// Reads a request body up to `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // Over the limit (the layer's `Limited` body or ours), or the client went away.
        if is_length_limit(&*e.into_inner()) {
            error_response(StatusCode::PAYLOAD_TOO_LARGE, too_large())
        } else {
            error_response(
                StatusCode::BAD_REQUEST,
                ApiError::BadUserInput("could not read the request body".to_owned()),
            )
        }
    })
}

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        if let Some(inner) = error.downcast_ref::<axum::Error>() {
            if let Some(source) = std::error::Error::source(inner) {
                if is_length_limit(source) {
                    return true;
                }
            }
        }
        current = error.source();
    }
    false
}

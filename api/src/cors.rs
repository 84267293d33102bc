//! Which browser origins may call the API, for CORS preflights and for WebSocket upgrades
//! alike (browsers apply no CORS to WebSockets, so the server checks their `Origin`).
//!
//! * Same origin (the `Origin` names the host the request was sent to) is always allowed,
//!   and so is a request without `Origin` (not a browser).
//! * Development also allows any port on localhost, 127.0.0.1 and [::1], so a front end on
//!   its dev server works out of the box.
//! * Otherwise only `CORS_ORIGINS` (`*` for any). A refused origin is logged once, naming
//!   the variable to set, so a puzzled front-end developer finds the fix in the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::limits::error_response;

/// Headers GraphQL clients send (Apollo's CSRF guard, tracing, request ids) besides the two
/// every client needs.
const ALLOWED_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "accept",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "x-request-id",
    "traceparent",
    "tracestate",
];
/// Response headers a browser script may read.
const EXPOSED_HEADERS: [&str; 2] = ["x-request-id", "retry-after"];
/// Refused origins remembered so each is logged once (bounded: a flood logs at most this many).
const MAX_LOGGED: usize = 100;

#[derive(Clone)]
pub struct Origins {
    listed: Arc<Vec<String>>,
    any: bool,
    localhost: bool,
    logged: Arc<Mutex<HashSet<String>>>,
}

impl Origins {
    pub fn new(listed: &[String], development: bool) -> Origins {
        let listed: Vec<String> = listed
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        Origins {
            any: listed.iter().any(|o| o == "*"),
            listed: Arc::new(listed),
            localhost: development,
            logged: Arc::default(),
        }
    }

    /// Whether a browser on `origin` may call a server reached as `host`.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let same_origin = host.is_some_and(|host| origin.split_once("://").is_some_and(|(_, rest)| rest == host));
        let allowed = same_origin || self.any || self.listed.iter().any(|o| o == origin) || (self.localhost && is_localhost(origin));
        if !allowed {
            self.log_refusal(origin);
        }
        allowed
    }

    fn log_refusal(&self, origin: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() < MAX_LOGGED && logged.insert(origin.to_owned()) {
            tracing::warn!(
                origin,
                "refused a browser request from an origin that is not allowed: add it to CORS_ORIGINS (--cors-origins), comma separated"
            );
        }
    }

    /// The CORS layer: answers every preflight, allowing the origins above.
    pub fn layer(&self) -> CorsLayer {
        let origins = self.clone();
        let allow = AllowOrigin::predicate(move |origin: &HeaderValue, parts: &Parts| {
            let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok());
            origin.to_str().is_ok_and(|origin| origins.allows(origin, host))
        });
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(Duration::from_secs(600))
    }
}

/// Refuses a WebSocket upgrade from a browser origin that is not allowed (HTTP 403), before
/// any GraphQL runs; other requests pass.
pub async fn check_websocket_origin(State(origins): State<Origins>, request: Request<Body>, next: Next) -> Response {
    let headers = request.headers();
    let upgrading = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrading {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            if !origin.to_str().is_ok_and(|origin| origins.allows(origin, host)) {
                let refusal = ApiError::Forbidden("this origin may not open a WebSocket here; the server's CORS_ORIGINS must list it".to_owned());
                return error_response(StatusCode::FORBIDDEN, refusal).into_response();
            }
        }
    }
    next.run(request).await
}

fn is_localhost(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    let host = rest
        .rsplit_once(':')
        .map_or(rest, |(host, port)| if port.chars().all(|c| c.is_ascii_digit()) { host } else { rest });
    matches!(scheme, "http" | "https") && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_allows_localhost_on_any_port_and_production_only_the_list() {
        let dev = Origins::new(&[], true);
        assert!(dev.allows("http://localhost:5173", Some("127.0.0.1:8080")));
        assert!(dev.allows("http://127.0.0.1:3000", None));
        assert!(dev.allows("http://[::1]:8080", None));
        assert!(!dev.allows("https://evil.example", Some("127.0.0.1:8080")));
        assert!(!dev.allows("http://localhost.evil.example", None));

        let prod = Origins::new(&["https://shop.example/".to_owned()], false);
        assert!(prod.allows("https://shop.example", Some("api.example")));
        assert!(!prod.allows("http://localhost:5173", Some("api.example")));
        assert!(prod.allows("https://api.example", Some("api.example")), "same origin");

        assert!(Origins::new(&["*".to_owned()], false).allows("https://anyone.example", None));
    }
}

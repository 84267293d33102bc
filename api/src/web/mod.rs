//! The storefront (`/`) and the admin console (`/admin`): static pages and ES modules
//! compiled into the binary (`api/web/`, see [`assets`]), talking to the server only
//! through the public GraphQL contract, plus one development-only helper, `POST
//! /dev/token`, that signs a token the way `cartsource token` does.
//!
//! Development serves the pages; production only with `--storefront`, and never the
//! token helper (its route does not exist there: 404). Every HTML page of the server (these
//! and GraphiQL) is sent by [`html_page`], with a strict Content-Security-Policy (no inline
//! script or style anywhere in `api/web/` or GraphiQL's page), no framing and no referrer;
//! every response of the server carries `X-Content-Type-Options: nosniff` (`server`).

mod assets;
#[cfg(test)]
mod documents;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::{self, Role};
use crate::config::Config;

/// How long a token from the development helper lives: a working day of clicking around.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// What the root says in production when it has neither pages nor GraphiQL to lead to.
const BARE_ROOT: &str = "cartsource: a GraphQL API. Send operations with POST /graphql.\n";

/// The routes of the pages. Without pages (production without `--storefront`) the root
/// leads to GraphiQL when that is served, else it answers 404 with one line of text.
pub fn routes(config: &Config, secret: Arc<[u8]>) -> Router {
    if !config.serves_pages() {
        if config.serves_graphiql() {
            return Router::new().route("/", get(|| async { Redirect::temporary("/graphql") }));
        }
        return Router::new().route("/", get(|| async { (StatusCode::NOT_FOUND, BARE_ROOT) }));
    }
    let mut router = Router::new()
        .route("/", get(|headers: HeaderMap| async move { page(&headers, assets::STOREFRONT) }))
        .route("/admin", get(|headers: HeaderMap| async move { page(&headers, assets::ADMIN) }))
        .route("/web/{*path}", get(asset));
    if !config.is_production() {
        router = router.route("/dev/token", post(move |body| dev_token(secret.clone(), body)));
    }
    router
}

/// The policy of every page: only this origin, for scripts, styles, images and
/// connections, plus its own WebSocket endpoint (`ws:`/`wss:` of the host the browser
/// asked for; older browsers do not count them as `'self'`); no framing. Images and fonts
/// may also be `data:` URLs (GraphiQL's stylesheet embeds its fonts so).
/// `style_hashes` allow the `<style>` elements of those SHA-256 hashes (base64), for a
/// page whose scripts inject known ones.
fn content_security_policy(headers: &HeaderMap, style_hashes: &[&str]) -> HeaderValue {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    let connect = match host {
        Some(host) => format!("'self' ws://{host} wss://{host}"),
        None => "'self'".to_owned(),
    };
    let style = if style_hashes.is_empty() {
        String::new()
    } else {
        let hashes: Vec<String> = style_hashes.iter().map(|h| format!(" 'sha256-{h}'")).collect();
        format!(" style-src 'self'{};", hashes.concat())
    };
    let policy = format!(
        "default-src 'self'; connect-src {connect}; img-src 'self' data:; font-src 'self' data:;{style} object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    // Only the filtered host is interpolated, so the value is always a valid header.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"))
}

fn page(headers: &HeaderMap, html: &'static str) -> Response {
    html_page(headers, html, &[])
}

/// An HTML page of this server (`headers` are the request's): the policy above, plus
/// `X-Frame-Options` and `Referrer-Policy` for browsers that predate `frame-ancestors` or
/// would send page URLs (cart ids) elsewhere. Not cached without asking again.
pub(crate) fn html_page(headers: &HeaderMap, html: &'static str, style_hashes: &[&str]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, content_security_policy(headers, style_hashes)),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        html,
    )
        .into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match assets::find(&path) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                // Not versioned by name: browsers check again, and get the new build at once.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    sub: String,
    #[serde(default)]
    role: Option<String>,
}

/// `cartsource token` for the pages, in development only: anyone who can reach a
/// development server may be anyone, which is what development means here.
async fn dev_token(secret: Arc<[u8]>, Json(request): Json<TokenRequest>) -> Response {
    let signed = request
        .role
        .as_deref()
        .unwrap_or("customer")
        .parse::<Role>()
        .and_then(|role| auth::issue_token(request.sub.trim(), role, DEV_TOKEN_TTL, &secret));
    match signed {
        Ok(token) => Json(serde_json::json!({ "token": token })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": e.to_string() }))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_only_the_requested_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let policy = content_security_policy(&headers, &[]);
        let policy = policy.to_str().expect("ascii");
        assert!(policy.starts_with("default-src 'self';"), "{policy}");
        assert!(
            policy.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"),
            "{policy}"
        );
        assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
        headers.insert(header::HOST, HeaderValue::from_static("evil; script-src *"));
        let policy = content_security_policy(&headers, &[]);
        assert!(policy.to_str().expect("ascii").contains("connect-src 'self';"), "{policy:?}");
        assert!(!policy.to_str().expect("ascii").contains("style-src"), "{policy:?}");
        let policy = content_security_policy(&headers, &["abc=", "def="]);
        assert!(
            policy
                .to_str()
                .expect("ascii")
                .contains("; style-src 'self' 'sha256-abc=' 'sha256-def='; "),
            "{policy:?}"
        );
    }
}

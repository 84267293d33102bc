//! A GraphQL response over HTTP as the GraphQL-over-HTTP specification wants it (checked by
//! the `graphql-http` audit suite in CI):
//!
//! * the media type the client accepts: `application/graphql-response+json` when it lists
//!   it, else `application/json` (also for `*/*` and no `Accept` at all);
//! * with `application/json`, every well-formed request answers 200 (legacy clients read
//!   errors from the body);
//! * with `application/graphql-response+json`, a request that never reached execution
//!   (the document did not parse or validate, a variable did not coerce, the role check
//!   refused it) answers 400 without a `data` entry; an executed one answers 200.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    Json,
    GraphqlResponseJson,
}

impl MediaType {
    pub fn accepted(headers: &HeaderMap) -> MediaType {
        let listed = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|media| {
                media
                    .split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON))
            });
        if listed {
            MediaType::GraphqlResponseJson
        } else {
            MediaType::Json
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            MediaType::Json => HeaderValue::from_static("application/json; charset=utf-8"),
            MediaType::GraphqlResponseJson => HeaderValue::from_static("application/graphql-response+json; charset=utf-8"),
        }
    }
}

/// Execution never began: no data, and every error is about the request, not a field.
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null && !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty())
}

pub fn graphql(response: async_graphql::Response, media: MediaType) -> Response {
    let request_error = media == MediaType::GraphqlResponseJson && is_request_error(&response);
    let mut headers = response.http_headers.clone();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    if let Some(cache) = response.cache_control.value().filter(|_| response.is_ok()) {
        if let Ok(value) = HeaderValue::from_str(&cache) {
            headers.insert(header::CACHE_CONTROL, value);
        }
    }
    let body = if request_error {
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_vec(&response)
    };
    let status = if request_error { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    match body {
        Ok(body) => {
            let mut http = (status, body).into_response();
            http.headers_mut().extend(headers);
            http
        }
        Err(e) => crate::limits::error_response(StatusCode::INTERNAL_SERVER_ERROR, crate::error::ApiError::internal(e)),
    }
}

//! The one place where the layers' errors become GraphQL errors with the contract's
//! `extensions.code`.
//!
//! Resolvers return `Result<T, ApiError>`; `?` on a [`DomainError`], [`CommandError`],
//! [`StoreError`], [`ProjectionError`], [`WaitError`] or [`AuthError`] goes through the
//! `From` impls below, which decide what the client may see. Internal failures keep
//! their cause for the log and reach the client as INTERNAL_SERVER_ERROR with a fixed
//! message. The crate enables async-graphql's `custom-error-conversion`, which removes
//! its blanket `From<impl Display>`: a sqlx or store error cannot slip into a GraphQL
//! error with its text, the compiler refuses it.
//!
//! [`coded_response`] gives a code to the errors async-graphql raises itself (a query
//! that does not parse, validation, variables that do not coerce) so that every error
//! the client sees carries one; `schema::gate` applies it to every response.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};

use commands::CommandError;
use domain::DomainError;
use projections::{ProjectionError, WaitError};
use store::StoreError;
use vault::VaultError;

use crate::auth::AuthError;

/// The contract's error codes.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const CONCURRENCY_CONFLICT: &str = "CONCURRENCY_CONFLICT";
    pub const CONSISTENCY_TIMEOUT: &str = "CONSISTENCY_TIMEOUT";
    /// The request ran out of time (a command still retrying after conflicts, or the
    /// HTTP request timeout): nothing more will happen for it; try again.
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The database cannot be reached for a moment (a restart, a failover, a full pool, a
    /// replica cancelling a read while it replays): nothing was written; try again.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// A subscription fell too far behind the live feed and was ended; extensions say
    /// where to resume (afterVersion or afterPosition).
    pub const SUBSCRIPTION_LAGGED: &str = "SUBSCRIPTION_LAGGED";
    /// The cart (stream) was archived by the retention policy or an admin (#15): it can no
    /// longer be read or changed; extensions.streamId and extensions.archivedVersion say
    /// which and at what version.
    pub const ARCHIVED: &str = "ARCHIVED";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
}

/// What the API answers. Each variant is one contract code; messages are for clients.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// What was not found, e.g. "cart" or "product tea".
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadUserInput(String),
    #[error("expected version {expected}, actual version {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error(transparent)]
    Domain(DomainError),
    #[error("the read model has not caught up with minPosition in time; try again")]
    ConsistencyTimeout,
    /// The request's deadline passed (see [`code::TIMEOUT`]).
    #[error("the request did not complete in time; try again")]
    Timeout,
    #[error("too many requests; slow down")]
    RateLimited,
    /// A transient database failure; the cause is logged, never sent.
    #[error("the database is unavailable for a moment; try again")]
    Unavailable(String),
    /// The subscriber did not read fast enough and was dropped from the live feed.
    #[error("this subscription fell too far behind and was ended; subscribe again after {0}")]
    SubscriptionLagged(store::Resume),
    /// The stream was archived (see [`code::ARCHIVED`]).
    #[error("{stream} was archived and can no longer be read or changed")]
    Archived { stream: String, version: u64 },
    /// The cause is logged, never sent.
    #[error("internal server error")]
    Internal(String),
}

impl ApiError {
    pub fn unauthenticated() -> Self {
        ApiError::Unauthenticated("sign in: send `Authorization: Bearer <token>`".to_owned())
    }

    pub fn admin_only() -> Self {
        ApiError::Forbidden("only an admin may do this".to_owned())
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => code::UNAUTHENTICATED,
            ApiError::Forbidden(_) => code::FORBIDDEN,
            ApiError::NotFound(_) => code::NOT_FOUND,
            ApiError::BadUserInput(_) => code::BAD_USER_INPUT,
            ApiError::Conflict { .. } => code::CONCURRENCY_CONFLICT,
            ApiError::Domain(e) => e.code(),
            ApiError::ConsistencyTimeout => code::CONSISTENCY_TIMEOUT,
            ApiError::Timeout => code::TIMEOUT,
            ApiError::RateLimited => code::RATE_LIMITED,
            ApiError::Unavailable(_) => code::UNAVAILABLE,
            ApiError::SubscriptionLagged(_) => code::SUBSCRIPTION_LAGGED,
            ApiError::Archived { .. } => code::ARCHIVED,
            ApiError::Internal(_) => code::INTERNAL_SERVER_ERROR,
        }
    }

    /// The GraphQL error: message plus `extensions.code` and the code's details.
    pub fn into_graphql(self) -> async_graphql::Error {
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", self.code());
        match &self {
            ApiError::Archived { stream, version } => {
                extensions.set("streamId", stream.as_str());
                extensions.set("archivedVersion", *version);
            }
            ApiError::Conflict { expected, actual } => {
                extensions.set("expectedVersion", *expected);
                extensions.set("actualVersion", *actual);
            }
            ApiError::Domain(DomainError::OutOfStock { sku, requested, available }) => {
                extensions.set("sku", sku.as_str());
                extensions.set("requested", *requested);
                extensions.set("available", *available);
            }
            ApiError::SubscriptionLagged(store::Resume::AfterVersion(version)) => extensions.set("afterVersion", *version),
            // A string, like the Position scalar.
            ApiError::SubscriptionLagged(store::Resume::AfterPosition(position)) => extensions.set("afterPosition", position.to_string()),
            ApiError::Domain(DomainError::ItemNotInCart { sku }) => extensions.set("sku", sku.as_str()),
            ApiError::Domain(DomainError::InvalidField { field, .. }) => extensions.set("field", field.as_str()),
            ApiError::Domain(DomainError::InvalidOrderState { from, .. }) => extensions.set("status", from.as_str()),
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error answered as INTERNAL_SERVER_ERROR"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "database unavailable, answered as UNAVAILABLE"),
            _ => {}
        }
        async_graphql::Error {
            message: self.to_string(),
            source: None,
            extensions: Some(extensions),
        }
    }

    /// This error outside any field (no location, no path): for refusals before
    /// execution (a bad token, a rate limit, a role check).
    pub fn into_server_error(self) -> ServerError {
        let error = self.into_graphql();
        let mut server_error = ServerError::new(error.message, None);
        server_error.extensions = error.extensions;
        server_error
    }

    /// A whole response made of this error.
    pub fn into_response(self) -> Response {
        Response::from_errors(vec![self.into_server_error()])
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        e.into_graphql()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Domain(e)
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(e) => ApiError::Domain(e),
            CommandError::Conflict { expected, actual } => ApiError::Conflict { expected, actual },
            CommandError::IdempotencyKeyReused => {
                ApiError::BadUserInput("this idempotency key was already used for a different request: use a new key".to_owned())
            }
            CommandError::NotFound(what) => ApiError::NotFound(what),
            // The contract: a command without expectedVersion never fails because of other
            // writers; it retries until the request's deadline, then answers TIMEOUT.
            CommandError::Timeout => ApiError::Timeout,
            CommandError::Store(e) => match Arc::try_unwrap(e) {
                Ok(e) => e.into(),
                Err(shared) => match shared.as_ref() {
                    StoreError::StreamArchived { stream, version } => ApiError::Archived {
                        stream: stream.clone(),
                        version: *version,
                    },
                    other if other.is_transient() => ApiError::Unavailable(error_chain(other)),
                    other => ApiError::Internal(error_chain(other)),
                },
            },
            CommandError::Vault(e) => ApiError::Internal(error_chain(e.as_ref())),
        }
    }
}

/// A missing master key or a ciphertext that does not authenticate is a bug or a
/// misconfiguration, never the client's; an erased key is not an error at all.
impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Store(e) => e.into(),
            other => ApiError::Internal(error_chain(&other)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict {
                expected: store::ExpectedVersion::Exact(expected),
                actual,
                ..
            } => ApiError::Conflict { expected, actual },
            StoreError::IdempotencyKeyReused { .. } => {
                ApiError::BadUserInput("this idempotency key was already used for a different request: use a new key".to_owned())
            }
            StoreError::SubscriberTooSlow { resume } => ApiError::SubscriptionLagged(resume),
            StoreError::StreamArchived { stream, version } => ApiError::Archived { stream, version },
            other if other.is_transient() => ApiError::Unavailable(error_chain(&other)),
            other => ApiError::Internal(error_chain(&other)),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::BadCursor => ApiError::BadUserInput("the `after` cursor is not one this server gave out".to_owned()),
            ProjectionError::UnknownProjection(name) => ApiError::NotFound(format!("projection {name:?}")),
            ProjectionError::NotRebuildable(name) => ApiError::BadUserInput(format!("{name} is not a read model and cannot be rebuilt")),
            other if other.is_transient() => ApiError::Unavailable(error_chain(&other)),
            other => ApiError::Internal(error_chain(&other)),
        }
    }
}

impl From<WaitError> for ApiError {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Timeout => ApiError::ConsistencyTimeout,
            WaitError::Store(e) => e.into(),
            other => ApiError::Internal(format!("waiting for a projection: {other:?}")),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Signing(_) | AuthError::Secret { .. } => ApiError::Internal(error_chain(&e)),
            other => ApiError::Unauthenticated(other.to_string()),
        }
    }
}

/// The error and its sources, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `error` with `default` as its code unless it has one.
pub(crate) fn with_default_code(mut error: ServerError, default: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", Value::from(default));
    }
    error
}

/// Every error async-graphql raised on its own gets a contract code: failed validation
/// (unknown fields, limits on depth and complexity, arguments or variables of the wrong
/// type) and values that do not coerce are BAD_USER_INPUT (a document that does not parse
/// never gets this far: GRAPHQL_PARSE_FAILED). Errors that already carry a code keep it.
pub(crate) fn coded_response(mut response: Response) -> Response {
    response.errors = response.errors.into_iter().map(|e| with_default_code(e, code::BAD_USER_INPUT)).collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(e: ApiError) -> (String, serde_json::Value) {
        let e = e.into_graphql();
        (e.message.clone(), serde_json::to_value(&e.extensions).unwrap())
    }

    #[test]
    fn an_archived_stream_is_a_contract_code_from_every_layer() {
        let archived = || StoreError::StreamArchived {
            stream: "cart-1".into(),
            version: 4,
        };
        let shared = Arc::new(archived());
        let _keep = Arc::clone(&shared);
        for e in [
            ApiError::from(archived()),
            CommandError::from(archived()).into(),
            CommandError::Store(shared).into(),
        ] {
            let (message, ext) = extensions(e);
            assert_eq!(ext["code"], "ARCHIVED");
            assert_eq!(ext["streamId"], "cart-1");
            assert_eq!(ext["archivedVersion"], 4);
            assert!(message.contains("archived"), "{message}");
        }
    }

    #[test]
    fn conflict_and_stock_details_are_json_numbers() {
        let (_, ext) = extensions(ApiError::Conflict { expected: 3, actual: 5 });
        assert_eq!(
            ext,
            serde_json::json!({"code": "CONCURRENCY_CONFLICT", "expectedVersion": 3, "actualVersion": 5})
        );
        let sku = domain::Sku::parse("apple").unwrap();
        let (_, ext) = extensions(
            DomainError::OutOfStock {
                sku,
                requested: 4,
                available: 1,
            }
            .into(),
        );
        assert_eq!(
            ext,
            serde_json::json!({"code": "OUT_OF_STOCK", "sku": "apple", "requested": 4, "available": 1})
        );
    }

    #[test]
    fn a_lagging_subscriber_is_told_where_to_resume() {
        let too_slow = |resume| StoreError::SubscriberTooSlow { resume }.into();
        let (message, ext) = extensions(too_slow(store::Resume::AfterVersion(12)));
        assert_eq!(ext, serde_json::json!({"code": "SUBSCRIPTION_LAGGED", "afterVersion": 12}));
        assert!(message.contains("after version 12"), "{message}");
        let (_, ext) = extensions(too_slow(store::Resume::AfterPosition(store::Position(3401614131201))));
        assert_eq!(ext, serde_json::json!({"code": "SUBSCRIPTION_LAGGED", "afterPosition": "3401614131201"}));
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let store_error = StoreError::Corrupt("row 17 of events has a bad json column in table events".into());
        let (message, ext) = extensions(store_error.into());
        assert_eq!(message, "internal server error");
        assert_eq!(ext, serde_json::json!({"code": "INTERNAL_SERVER_ERROR"}));
    }

    #[test]
    fn command_errors_map_to_their_codes() {
        let cases: Vec<(ApiError, &str)> = vec![
            (CommandError::Domain(DomainError::EmptyCart).into(), "EMPTY_CART"),
            (CommandError::Domain(DomainError::CartNotOpen).into(), "CART_NOT_OPEN"),
            (CommandError::Conflict { expected: 1, actual: 2 }.into(), "CONCURRENCY_CONFLICT"),
            (CommandError::IdempotencyKeyReused.into(), "BAD_USER_INPUT"),
            (CommandError::Timeout.into(), "TIMEOUT"),
            (CommandError::NotFound("cart".into()).into(), "NOT_FOUND"),
            (AuthError::Expired.into(), "UNAUTHENTICATED"),
            (WaitError::Timeout.into(), "CONSISTENCY_TIMEOUT"),
            (StoreError::Database(sqlx::Error::PoolTimedOut).into(), "UNAVAILABLE"),
            (
                CommandError::Store(Arc::new(StoreError::Database(sqlx::Error::PoolClosed))).into(),
                "UNAVAILABLE",
            ),
            (ProjectionError::Database(sqlx::Error::PoolTimedOut).into(), "UNAVAILABLE"),
            (
                WaitError::Store(ProjectionError::Database(sqlx::Error::PoolTimedOut)).into(),
                "UNAVAILABLE",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }
}

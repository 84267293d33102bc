//! The face of cartsource: the GraphQL contract (../shared/design/schema.graphql) served
//! over HTTP and WebSocket, and the `cartsource` binary.
//!
//! * `schema` (with `context`, `auth`, `error`): the contract's types and resolvers;
//!   mutations go through the write model (the `commands` crate), queries read
//!   the projections, subscriptions follow the event store.
//! * `server`: routes, middleware, start-up per role, graceful shutdown; `probes` health,
//!   readiness and metrics; `ws` the
//!   WebSocket transport; `playground` GraphiQL from the binary; `limits` abuse limits (`shared_limit` their Redis store);
//!   `metrics` Prometheus; `telemetry` logs, traces and their propagation; `config` flags and environment; `seed` the demo catalog;
//!   `web` the storefront and the admin console (pages on the public contract).
//!
//! `main.rs` stays thin: tests drive the same `Application` users run.

pub mod auth;
pub mod config;
pub mod context;
mod cors;
mod error;
mod http_response;
mod instance_lock;
mod limits;
mod metrics;
mod playground;
mod probes;
mod replica;
pub mod schema;
mod secret_file;
pub mod seed;
pub mod server;
mod shared_limit;
pub mod telemetry;
mod web;
mod ws;

pub use config::{Cli, Command, Config};
pub use server::{Application, StartError};

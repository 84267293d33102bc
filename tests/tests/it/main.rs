//! Black-box tests of cartsource: the real server on a random port, real clients, real
//! databases. One test binary (each binary links the whole server): a module per area.

#[macro_use]
mod support;

mod graphql_access;
mod graphql_archive;
mod graphql_commands;
mod graphql_contract;
mod graphql_errors;
mod graphql_http_audit;
mod graphql_scenario;
mod graphql_schema;
mod graphql_stream_events;
mod graphql_subscriptions;
mod graphql_write_path;
mod hardening;
mod health;
mod personal_data;
mod read_replica;
mod server_http;
mod server_ws;
mod shared_rate_limits;
mod web_pages;

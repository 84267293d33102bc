//! The store's integration tests. One test binary (each binary links the whole crate and
//! sqlx): a module per area. Every test gets a fresh database of its own, so they run in
//! parallel in this one process.

mod archive;
mod backends;
mod contract;
mod group_commit;
mod migrations;
mod postgres;
mod sqlite;
mod sqlite_group_commit;

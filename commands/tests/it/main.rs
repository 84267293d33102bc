//! The commands crate against real stores (PostgreSQL and SQLite). One test binary
//! (each binary links the store and its drivers): a module per area.

#[macro_use]
mod support;

mod aggregate;
mod erasure;
mod write_model;

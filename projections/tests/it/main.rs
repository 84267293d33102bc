//! The projections crate's integration tests against real databases (and NATS for the bus).
//! One test binary (each binary links the whole read side, the store and the domain): a
//! module per area.

#[macro_use]
mod common;

mod archiving;
mod bus;
mod costs;
mod leader;
mod reactors;
mod read_models;
mod runner;

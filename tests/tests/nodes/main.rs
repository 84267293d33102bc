//! Several `cartsource` processes on one Postgres, tested from outside as an operator runs
//! them (#16): two API-only nodes and two workers, real clients over HTTP and WebSocket,
//! a leader frozen (SIGSTOP) or killed (SIGKILL) under load, live updates across nodes, an
//! API node killed or stopped with SIGTERM under load, PostgreSQL restarted under load. Run with
//! `cargo build -p api --bin cartsource && cargo test -p tests --test nodes -- --nocapture`
//! to see the measured takeover times.

mod bus;
mod checks;
mod client;
mod failover;
mod harness;
mod live;
mod node_loss;
mod pg_restart;
mod sigterm;

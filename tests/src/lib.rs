//! Black-box tests of cartsource live in `tests/it/` (one test binary, a module per area;
//! run them with `cargo test -p tests`), and `tests/traces.rs`, a binary of its own
//! because it installs a global tracing subscriber. This library is empty on purpose: everything the
//! tests use is a dev-dependency, so building the workspace builds nothing extra and
//! `cargo run --release` after `cargo build --release --workspace` rebuilds nothing.

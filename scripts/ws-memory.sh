#!/usr/bin/env bash
# Server RSS for 1,000 idle cartChanged subscriptions (graphql-transport-ws), and after
# they all closed, against a release build on Postgres:
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/cs_mem scripts/ws-memory.sh [connections] [rounds]
# The database is created if missing and should be empty (its carts are created here).
set -euo pipefail
connections=${1:-1000}
rounds=${2:-2}
: "${DATABASE_URL:?set DATABASE_URL=postgres://user@host:port/db}"
export JWT_SECRET=${JWT_SECRET:-ws-memory-secret-ws-memory-secret-0123456789}
addr=127.0.0.1:${PORT:-28417}
# The server in release; the client (debug is fast enough) from the tests crate.
cargo build --release -q -p api
cargo build -q -p tests --example ws_memory
target=${CARGO_TARGET_DIR:-target}/release
if curl -sf "http://$addr/healthz" >/dev/null; then echo "something already listens on $addr: set PORT" >&2; exit 1; fi
createdb "${DATABASE_URL##*/}" -h 127.0.0.1 -U postgres 2>/dev/null || true
"$target/cartsource" serve --database-url "$DATABASE_URL" --listen-addr "$addr" --log warn \
  --rate-limit-per-second 100000 --rate-limit-burst 100000 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$addr/healthz" >/dev/null && break; sleep 0.2; done
token=$("$target/cartsource" token --sub ws-memory)
"${CARGO_TARGET_DIR:-target}/debug/examples/ws_memory" "http://$addr" "$server" "$token" "$connections" "$rounds"

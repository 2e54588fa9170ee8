#!/usr/bin/env bash
# The cost of one keyed request's store and journal work in the embedded store, Redis and
# PostgreSQL, at 1 and at 32 requests in flight (bench/postgres/main.rs says what is timed).
# Starts a redis-server of its own on a free port (no persistence, as bench/redis does), makes
# a database of its own on the machine's PostgreSQL (127.0.0.1:5432, user postgres, as the
# tests use it) and drops it afterwards; the embedded file goes to a temporary directory.
#
#   bash bench/postgres/run.sh [N]        # N keyed requests per row (2000)
#
# Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

pg_isready -q -h 127.0.0.1 || { echo "PostgreSQL must be up on 127.0.0.1:5432 (tests/run.sh starts it)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing (tests/run.sh installs it)" >&2; exit 1; }
cargo build --quiet --release --example bench-postgres
target="${CARGO_TARGET_DIR:-target}"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
db="payguard_bench_$$"
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres || true
  rm -rf "$dir"
}
trap cleanup EXIT
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" postgres
for _ in $(seq 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

echo "$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version' postgres | cut -d' ' -f1) (fsync $(psql -h 127.0.0.1 -U postgres -Atc 'SHOW fsync' postgres), synchronous_commit $(psql -h 127.0.0.1 -U postgres -Atc 'SHOW synchronous_commit' postgres)); redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'); $(nproc) cores"
"$target/release/examples/bench-postgres" "postgres://postgres@127.0.0.1:5432/$db" \
  "redis://127.0.0.1:$port/0" "$dir" "${1:-2000}"

#!/usr/bin/env bash
# The Redis backends' cost against one Redis round trip, in one run: starts a redis-server of
# its own on a free port (no persistence), runs the bench-redis example against it, stops it.
#
#   bash bench/redis/run.sh [N]        # N sequential operations per row (5000)
#
# Installs redis-server (Debian) when it is missing. Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
cargo build --quiet --release --example bench-redis

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done

echo "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$port; $(nproc) cores"
./target/release/examples/bench-redis "redis://127.0.0.1:$port/0" "${1:-5000}"

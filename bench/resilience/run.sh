#!/usr/bin/env bash
# Resilience under transient faults, side by side: no retry, the seed article's retry loop (a
# fresh idempotency key per attempt), payguard, and the official stripe-node SDK, each against
# a fresh provider double failing a seeded 30% of requests.
#
#   bash bench/resilience/run.sh [extra bench-resilience flags...]
#
# Installs what is missing (the npm `stripe` package into bench/resilience/node/), builds the
# `bench-resilience` example in release mode, runs it, writes the JSON results to
# bench/out/resilience.json (git-ignored), and prints the markdown table (also saved as
# bench/out/resilience.md). Takes well under a minute once built on 2 cores.
#
# Knobs (environment): ORDERS (5000), CONCURRENCY (32), FAIL_RATE (0.3), SEED (11),
# TIME_SCALE (0.01), STRIPE_ORDERS (= ORDERS; stripe-node's retry delays are real time),
# PAYGUARD_STORE (embedded), SKIP_BUILD=1 to reuse the built binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

ORDERS="${ORDERS:-5000}"
CONCURRENCY="${CONCURRENCY:-32}"
FAIL_RATE="${FAIL_RATE:-0.3}"
SEED="${SEED:-11}"
TIME_SCALE="${TIME_SCALE:-0.01}"
STRIPE_ORDERS="${STRIPE_ORDERS:-$ORDERS}"
PAYGUARD_STORE="${PAYGUARD_STORE:-embedded}"
NODE_DIR="$ROOT/bench/resilience/node"
OUT="$ROOT/bench/out"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/examples/bench-resilience"

log() { printf '[resilience %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1; }

need node || die "node is required for the stripe-node strategy (Node 20 or later)"
need npm || die "npm is required to install stripe-node"
need cargo || die "cargo is required"

if [[ ! -f "$NODE_DIR/node_modules/stripe/package.json" ]]; then
  log "installing stripe-node into $NODE_DIR"
  (cd "$NODE_DIR" && npm install stripe@latest --no-audit --no-fund)
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building bench-resilience (release)"
  cargo build --release --example bench-resilience
fi
[[ -x "$BIN" ]] || die "$BIN is missing; build it or unset SKIP_BUILD"

mkdir -p "$OUT"
log "running: $ORDERS orders (stripe-node $STRIPE_ORDERS), concurrency $CONCURRENCY, fail rate $FAIL_RATE, seed $SEED, time scale $TIME_SCALE"
table="$(
  timeout 600 "$BIN" \
    --orders "$ORDERS" \
    --stripe-orders "$STRIPE_ORDERS" \
    --concurrency "$CONCURRENCY" \
    --fail-rate "$FAIL_RATE" \
    --seed "$SEED" \
    --time-scale "$TIME_SCALE" \
    --payguard-store "$PAYGUARD_STORE" \
    --node-dir "$NODE_DIR" \
    --json "$OUT/resilience.json" \
    "$@"
)"

if git rev-parse --git-dir >/dev/null 2>&1; then
  commit="$(git rev-parse --short HEAD)"
  git diff --quiet HEAD -- src Cargo.toml || commit+=" (plus uncommitted changes in src/ or Cargo.toml)"
else
  commit="unknown (not a git checkout)"
fi
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $commit"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo
  echo "$table"
} | tee "$OUT/resilience.md"
log "results: $OUT/resilience.json, $OUT/resilience.md"

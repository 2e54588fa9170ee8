#!/usr/bin/env bash
# Real Stripe SDK clients against the provider double, straight and through payguard running
# its shipped config.toml, under five fault scenarios (issue #16).
#
#   bash bench/scenarios/run.sh                        # everything, defaults (about 43 minutes)
#   QUICK=1 bash bench/scenarios/run.sh                # 60 orders a run, 20 s outage (~12 min)
#   SCENARIOS=mix,cap CLIENTS=py-r0,article ORDERS=200 bash bench/scenarios/run.sh
#
# Clients (CLIENTS, comma-separated; default all), each sending orders from W worker threads
# or tasks, every order one `POST /v1/payment_intents` (amount, currency, confirm=true,
# metadata[order_id]) or, in `lock`, one `POST /v1/refunds`:
#   py-r0    stripe-python 16.1.0, StripeClient(max_network_retries=0)
#   py-r2    stripe-python 16.1.0, max_network_retries=2
#   node-r0  stripe-node 23.1.0 (node/package-lock.json), maxNetworkRetries: 0
#   node-r2  stripe-node 23.1.0, maxNetworkRetries: 2
#   article  the seed article's loop over plain HTTP: 5 attempts, 1 s doubling backoff + up to
#            1 s jitter, retrying network errors, 5xx and 429, a fresh idempotency key per attempt
#
# Scenarios (SCENARIOS, comma-separated; default all), each client run once straight to a fresh
# double and once through a fresh payguard in front of a fresh double. The times are for all
# five clients, both paths, at the default size, on 2 cores, measured by a full default run at
# 6d54ebc (payguard's limiter at 9.8/s); the whole default run took 43 minutes:
#   mix     1000 orders, 4 workers; 30% of calls fail: reset before / after processing, 500,
#           503, 429 rate_limit with Retry-After: 1, equal shares; no rate cap      ~18 min
#   cap     300 orders, 16 workers; the double's limiter at 10/s, burst 10; no faults  ~3 min
#   outage  400 orders arriving at 5/s, served by 4 workers (an order waits for a free one,
#           and its latency counts from arrival); 5 s normal, 60 s of 503 on every call, 15 s
#           normal (OUTAGE_BEFORE, OUTAGE_SECS, OUTAGE_AFTER, OUTAGE_RATE)             ~14 min
#   lock    300 orders, 4 workers; each a 1-cent refund of one shared payment intent; 30%
#           of the calls naming it are answered 429 lock_timeout (LOCK_RATE)            ~5 min
#   slow    80 orders, 8 workers; every provider call takes 2 s                         ~3.5 min
# Through payguard, orders go at its limiter's pace: a slower limiter makes mix, cap and lock
# take longer.
#
# Knobs: ORDERS (orders per run for every scenario but outage; default per scenario), QUICK=1
# (ORDERS=60 and a 20 s outage unless set), SEED (the double's fault seed, 11), SKIP_BUILD=1.
#
# payguard runs `config.toml` as shipped but for `[upstream] url` (the double, over http) and
# the ports of `[listen] proxy` and `admin`, written by a textual substitution of those lines
# into a fresh temporary directory per run (so the embedded store's relative `path` is fresh
# too); the diff is printed in the report. Output: bench/out/scenarios.md (also on stdout),
# bench/out/scenarios.json, and each run's raw data in bench/out/scenarios/.
#
# Installs what is missing: stripe-python 16.1.0 (pip), stripe-node from node/package-lock.json
# (npm ci). Builds payguard and payguard-provider in release ($CARGO_TARGET_DIR or target/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/scenarios"
cd "$ROOT"

log() { printf '[scenarios %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1; }

need python3 || die "python3 is required"
need node || die "node (20 or later) is required for stripe-node"
need npm || die "npm is required to install stripe-node"
need cargo || die "cargo is required"

STRIPE_PYTHON=16.1.0
if ! python3 -c "import stripe, sys; sys.exit(stripe.VERSION != '$STRIPE_PYTHON')" 2>/dev/null; then
  log "installing stripe-python $STRIPE_PYTHON"
  python3 -m pip install --quiet "stripe==$STRIPE_PYTHON" ||
    python3 -m pip install --quiet --break-system-packages "stripe==$STRIPE_PYTHON"
fi
if [[ ! -f "$HERE/node/node_modules/stripe/package.json" ]]; then
  log "installing stripe-node (npm ci)"
  npm ci --prefix "$HERE/node" --no-audit --no-fund --loglevel=error
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building payguard and payguard-provider (release)"
  cargo build --release --quiet --bin payguard && cargo build --release --quiet -p payguard-double --bin payguard-provider
fi
for bin in payguard payguard-provider; do
  [[ -x "$TARGET_DIR/release/$bin" ]] || die "$TARGET_DIR/release/$bin is missing; build it or unset SKIP_BUILD"
done

if [[ "${QUICK:-0}" == 1 ]]; then
  ORDERS="${ORDERS:-60}"
  OUTAGE_SECS="${OUTAGE_SECS:-20}"
fi

# The command as a reader would retype it, knobs included.
command="bash bench/scenarios/run.sh"
for knob in SCENARIOS CLIENTS ORDERS QUICK SEED LOCK_RATE OUTAGE_BEFORE OUTAGE_SECS OUTAGE_AFTER OUTAGE_RATE; do
  [[ -n "${!knob:-}" ]] && command="$knob=${!knob} $command"
done

args=(
  --provider "$TARGET_DIR/release/payguard-provider"
  --payguard "$TARGET_DIR/release/payguard"
  --command "$command"
)
[[ -n "${SCENARIOS:-}" ]] && args+=(--scenarios "$SCENARIOS")
[[ -n "${CLIENTS:-}" ]] && args+=(--clients "$CLIENTS")
[[ -n "${ORDERS:-}" ]] && args+=(--orders "$ORDERS")
[[ -n "${SEED:-}" ]] && args+=(--seed "$SEED")
[[ -n "${LOCK_RATE:-}" ]] && args+=(--lock-rate "$LOCK_RATE")
[[ -n "${OUTAGE_BEFORE:-}" ]] && args+=(--outage-before "$OUTAGE_BEFORE")
[[ -n "${OUTAGE_SECS:-}" ]] && args+=(--outage-secs "$OUTAGE_SECS")
[[ -n "${OUTAGE_AFTER:-}" ]] && args+=(--outage-after "$OUTAGE_AFTER")
[[ -n "${OUTAGE_RATE:-}" ]] && args+=(--outage-rate "$OUTAGE_RATE")

# The harness stops every process it started, on success, failure, SIGINT or SIGTERM.
python3 "$HERE/harness.py" "${args[@]}"

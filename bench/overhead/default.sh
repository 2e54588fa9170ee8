#!/usr/bin/env bash
# The default rows: payguard with the shipped config.toml, limiter on, at a pace the shipped
# limiter admits (RATE, 9/s, under its 9.8/s), beside the direct path at the same pace. The
# other overhead benchmarks turn the limiter off to load payguard at thousands a second; this
# says what a user who runs config.toml unchanged pays per request.
#
#   bash bench/overhead/default.sh            # SKIP_BUILD=1, RATE=, DURATION= (30 s a phase)
#
# Rows: GET /v1/payment_intents/pi_… (route "reads"); POST /v1/payment_intents without an
# Idempotency-Key (route create_payment_intent: payguard injects a key, claims it, journals the
# request, stores the answer), on the shipped embedded store; and beside it the same POST with
# store = "memory", the one setting changed. Latency is oha's, corrected for coordinated
# omission; "added" is the row minus direct at the same pace. CPU per request is payguard's
# on-CPU time (all threads, /proc/PID/schedstat) over the phase divided by its answers, so it
# includes what payguard spends idle (timers, the prune, the resolver's polls), which the
# "idle" line gives per second on its own. At a few requests a second every request wakes a
# sleeping process, and on a VM that costs far more than a request under load; the floor row
# (bench-floor, hyper and tokio relaying with nothing else, run.sh's floor) pays it too, so
# compare payguard's CPU with the floor's, not with run.sh's loaded figures. Pinning as
# run.sh: payguard and the floor on CPU 1, oha and the upstream on CPU 0.
#
# Output: bench/out/default/ (git-ignored): oha's JSON per phase, runs.jsonl and table.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RATE="${RATE:-9}"
DURATION="${DURATION:-30}"
IDLE="${IDLE:-20}"
CONNS=4
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$ROOT/bench/out/default"
GET_PATH="/v1/payment_intents/pi_3PbenchUpstream0001"
POST_PATH="/v1/payment_intents"
AUTH_HEADER="Authorization: Bearer sk_test_bench_not_a_real_key"

log() { printf '[default %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
export PATH="$PATH:$HOME/.cargo/bin"
command -v oha >/dev/null || die "oha is missing (bench/overhead/run.sh installs it)"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --bin payguard --example bench-upstream --example bench-floor
fi
PAYGUARD_BIN="$TARGET_DIR/release/payguard"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
FLOOR_BIN="$TARGET_DIR/release/examples/bench-floor"

bench_workdir default
rm -rf "$OUT"
mkdir -p "$OUT"

read -r UP_PORT EMB_PORT EMB_ADMIN MEM_PORT MEM_ADMIN FLOOR_PORT <<<"$(free_ports 6)"
declare -A PORT=([direct]="$UP_PORT" [embedded]="$EMB_PORT" [memory]="$MEM_PORT" [floor]="$FLOOR_PORT")
start_bench_upstream "$UP_PORT"
taskset -c 1 "$FLOOR_BIN" --port "$FLOOR_PORT" --upstream "127.0.0.1:$UP_PORT" --mode conn \
  >"$WORK/floor.log" 2>&1 &
PIDS[floor]=$!
wait_port "$FLOOR_PORT" "${PIDS[floor]}" bench-floor "$WORK/floor.log"
for store in embedded memory; do
  port="${PORT[$store]}"
  admin="$EMB_ADMIN"
  [[ "$store" == memory ]] && admin="$MEM_ADMIN"
  shipped_config "$WORK/$store.toml" "$port" "$admin" "$UP_PORT" "$WORK/$store" "$store" info "${LIMITER:-on}"
  taskset -c 1 "$PAYGUARD_BIN" run --config "$WORK/$store.toml" >"$WORK/$store.log" 2>&1 &
  PIDS[$store]=$!
  wait_port "$port" "${PIDS[$store]}" "payguard ($store)" "$WORK/$store.log"
done

on_cpu_ns() { if [[ "$1" == direct ]]; then echo 0; else read -r ns _ <"/proc/${PIDS[$1]}/schedstat" && echo "$ns"; fi; }

# One paced phase: target, method, then oha's JSON lands in $OUT/TARGET-METHOD.json.
phase() {
  local target="$1" method="$2" path="$GET_PATH" before after
  local args=(-z "${DURATION}s" -c "$CONNS" -q "$RATE" --latency-correction -w --no-tui
    --output-format json -H "$AUTH_HEADER")
  if [[ "$method" == POST ]]; then
    path="$POST_PATH"
    args+=(-m POST -T application/x-www-form-urlencoded -d "amount=1000&currency=usd")
  fi
  log "$target: $method at ${RATE}/s for ${DURATION}s"
  before="$(on_cpu_ns "$target")"
  taskset -c 0 oha "${args[@]}" -o "$OUT/$target-$method.json" "http://127.0.0.1:${PORT[$target]}$path" >/dev/null
  after="$(on_cpu_ns "$target")"
  printf '{"target":"%s","method":"%s","cpu_ns":%s}\n' "$target" "$method" "$((after - before))" >>"$OUT/runs.jsonl"
}

# payguard at rest first: what it spends per second with nothing to do.
before="$(on_cpu_ns embedded)"
sleep "$IDLE"
after="$(on_cpu_ns embedded)"
printf '{"target":"embedded","method":"idle","cpu_ns":%s,"seconds":%s}\n' "$((after - before))" "$IDLE" >>"$OUT/runs.jsonl"
for method in GET POST; do
  for target in direct floor embedded memory; do
    phase "$target" "$method"
  done
done
rss() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/${PIDS[$1]}/status"; }
printf '{"rss_mib":{"floor":%s,"embedded":%s,"memory":%s},"rate":%s,"duration":%s,"commit":"%s"}\n' \
  "$(rss floor)" "$(rss embedded)" "$(rss memory)" "$RATE" "$DURATION" "$(git rev-parse --short HEAD)" >>"$OUT/runs.jsonl"

python3 - "$OUT" <<'EOF' | tee "$OUT/table.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = [json.loads(l) for l in open(out / "runs.jsonl")]
meta = lines[-1]
cpu = {(l["target"], l["method"]): l for l in lines if "cpu_ns" in l}
def oha(target, method):
    d = json.load(open(out / f"{target}-{method}.json"))
    codes = d.get("statusCodeDistribution", {})
    ms = lambda q: d["latencyPercentiles"][q] * 1000
    return sum(codes.values()), sum(n for c, n in codes.items() if not c.startswith("2")), ms("p50"), ms("p99")
idle = cpu[("embedded", "idle")]
print(f"config.toml as shipped (limiter on), {meta['rate']}/s for {meta['duration']} s a row, commit {meta['commit']}; "
      f"payguard idle: {idle['cpu_ns'] / idle['seconds'] / 1000:.0f} µs of CPU a second")
print()
print("| row | answers | non-2xx | p50 ms | p99 ms | added p50 / p99 ms | proxy CPU µs/request | peak RSS MiB |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
labels = {"direct": "direct", "floor": "the stack's floor", "embedded": "payguard, as shipped",
          "memory": "payguard, store = \"memory\""}
for method in ("GET", "POST"):
    _, _, d50, d99 = oha("direct", method)
    for target in ("direct", "floor", "embedded", "memory"):
        n, bad, p50, p99 = oha(target, method)
        if target == "direct":
            print(f"| {method} {labels[target]} | {n} | {bad} | {p50:.3f} | {p99:.3f} | — | — | — |")
        else:
            us = cpu[(target, method)]["cpu_ns"] / 1000 / max(n, 1)
            print(f"| {method} {labels[target]} | {n} | {bad} | {p50:.3f} | {p99:.3f} | "
                  f"{p50 - d50:+.3f} / {p99 - d99:+.3f} | {us:.1f} | {meta['rss_mib'][target]} |")
EOF

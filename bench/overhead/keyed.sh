#!/usr/bin/env bash
# Keyed POSTs under concurrency: what the embedded (redb) store adds over the memory store when
# CONNS (32) keyed requests are in flight at once, journal included, every answer durable.
#
#   bash bench/overhead/keyed.sh            # SKIP_BUILD=1, REQUESTS= (5000), CONNS=, ROUNDS=
#
# payguard runs the shipped config.toml with only the ports, the upstream URL, the store path
# and the limiter (off: its 9.8/s is a Stripe account's limit) changed, and per row the store:
# "embedded" as shipped, or "memory". Each request is POST /v1/payment_intents with a fresh
# Idempotency-Key (route create_payment_intent: claim, journal entry, completion, journal
# settle). The store file lives under /tmp, on the same disk as a deployment's volume would
# be here. payguard is pinned to CPU 1, the upstream and bench-load to CPU 0. ROUNDS (3)
# alternate memory and embedded so drift on a shared machine lands on both; each round's
# figures are printed, with payguard's CPU per request over the measured load (on-CPU time of
# all its threads from /proc/PID/schedstat, and the system share from /proc/PID/stat's ticks),
# and peak RSS (VmHWM) of payguard over its whole life.
#
# Output: bench/out/keyed/ (git-ignored): one JSON line per run in runs.jsonl, and table.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
REQUESTS="${REQUESTS:-5000}"
WARMUP_REQUESTS="${WARMUP_REQUESTS:-500}"
CONNS="${CONNS:-32}"
ROUNDS="${ROUNDS:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$ROOT/bench/out/keyed"

log() { printf '[keyed %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --bin payguard --example bench-upstream --example bench-load
fi
PAYGUARD_BIN="$TARGET_DIR/release/payguard"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
LOAD_BIN="$TARGET_DIR/release/examples/bench-load"

bench_workdir keyed
rm -rf "$OUT"
mkdir -p "$OUT"

read -r UP_PORT PORT ADMIN <<<"$(free_ports 3)"
start_bench_upstream "$UP_PORT"

# Sends n keyed POSTs; prints bench-load's JSON.
load() {
  taskset -c 0 "$LOAD_BIN" --url "http://127.0.0.1:$PORT/v1/payment_intents" \
    --requests "$1" --connections "$CONNS" --method POST --keyed
}

# payguard's CPU so far, all threads: [on-CPU ns (schedstat), user ticks, system ticks].
cpu_of() {
  local run user sys
  read -r run _ </proc/"$1"/schedstat
  read -r user sys < <(awk '{print $14, $15}' /proc/"$1"/stat)
  printf '[%s,%s,%s]' "$run" "$user" "$sys"
}

for ((round = 1; round <= ROUNDS; round++)); do
  for store in memory embedded; do
    rm -rf "$WORK/store"
    shipped_config "$WORK/payguard.toml" "$PORT" "$ADMIN" "$UP_PORT" "$WORK/store" "$store"
    taskset -c 1 "$PAYGUARD_BIN" run --config "$WORK/payguard.toml" >"$WORK/$store.log" 2>&1 &
    PIDS[payguard]=$!
    wait_port "$PORT" "${PIDS[payguard]}" payguard "$WORK/$store.log"
    load "$WARMUP_REQUESTS" >/dev/null
    before="$(cpu_of "${PIDS[payguard]}")"
    result="$(load "$REQUESTS")"
    after="$(cpu_of "${PIDS[payguard]}")"
    rss="$(awk '/^VmHWM:/ {print $2}' "/proc/${PIDS[payguard]}/status")"
    stop_pid "${PIDS[payguard]}"
    unset "PIDS[payguard]"
    printf '{"round":%s,"store":"%s","peak_rss_kib":%s,"cpu_before":%s,"cpu_after":%s,"load":%s}\n' \
      "$round" "$store" "$rss" "$before" "$after" "$result" | tee -a "$OUT/runs.jsonl" >&2
  done
done

python3 - "$OUT/runs.jsonl" "$CONNS" "$REQUESTS" <<'EOF' | tee "$OUT/table.md"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
conns, n = sys.argv[2], sys.argv[3]
print(f"{n} keyed POSTs per run, {conns} in flight; latency in ms as bench-load measured it")
print()
print("| round | store | p50 | p90 | p99 | max | req/s | CPU µs/request | of it system | non-2xx | errors | peak RSS MiB |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in runs:
    l, (run0, u0, s0), (run1, u1, s1) = r["load"], r["cpu_before"], r["cpu_after"]
    cpu = (run1 - run0) / 1000 / int(n)
    system = (s1 - s0) / max((u1 - u0) + (s1 - s0), 1)
    print(f"| {r['round']} | {r['store']} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} | {l['rps']:,.0f} | {cpu:.1f} | {system:.0%} | {l['non_2xx']} | {l['errors']} | {r['peak_rss_kib'] / 1024:.1f} |")
med = lambda store, k: statistics.median(r["load"][k] for r in runs if r["store"] == store)
print()
for k in ("p50_ms", "p99_ms"):
    print(f"- added {k[:3]} (median over rounds, embedded minus memory): {med('embedded', k) - med('memory', k):+.2f} ms")
print(f"- peak RSS, most of any run: {max(r['peak_rss_kib'] for r in runs) / 1024:.1f} MiB")
EOF

#!/usr/bin/env bash
# Syscalls per request, counted by strace, for pass-through GETs to one upstream:
#   payguard    the shipped config.toml with the limiter off (log level as shipped: info, a
#               request line each), REQUESTS (20,000) over CONNS connections, as fast as it goes
#   floor       the stack's floor (bench-floor --mode conn), the same load
#   shipped     the default row: the shipped config.toml unchanged (limiter on), PACED (180)
#               requests at RATE (9/s, under the limiter's 9.8/s), sent by oha. At this pace
#               each request line waits out its 50 ms alone, so batching saves nothing here
# Like instructions.sh, a count rather than a time: the kernel's share of a request's CPU is
# mostly its syscalls, and callgrind does not see them.
#
#   bash bench/overhead/syscalls.sh     # or SKIP_BUILD=1, REQUESTS=, CONNS=, RATE=, PACED=
#
# `strace -c -f` attaches after warm-up requests (2,000; 20 for the paced row) and detaches after the load, so each
# window also holds ~1.5 s of idle (timers included), which only the paced row notices.
# strace slows the process: only the counts mean anything, not the times it prints.
# Output: bench/out/syscalls/ (git-ignored): strace's tables and table.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
REQUESTS="${REQUESTS:-20000}"
CONNS="${CONNS:-8}"
RATE="${RATE:-9}"
PACED="${PACED:-180}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$ROOT/bench/out/syscalls"
REQUEST_PATH="/v1/payment_intents/pi_3PbenchUpstream0001"

log() { printf '[syscalls %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

if ! command -v strace >/dev/null; then
  log "installing strace"
  apt-get install -y strace >/dev/null || die "strace missing (apt-get install strace)"
fi
command -v oha >/dev/null || die "oha is missing (bench/overhead/run.sh installs it)"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --bin payguard --example bench-upstream --example bench-load \
    --example bench-floor
fi
PAYGUARD_BIN="$TARGET_DIR/release/payguard"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
LOAD_BIN="$TARGET_DIR/release/examples/bench-load"
FLOOR_BIN="$TARGET_DIR/release/examples/bench-floor"

bench_workdir syscalls
rm -rf "$OUT"
mkdir -p "$OUT"
read -r UP_PORT PG_PORT PG_ADMIN SH_PORT SH_ADMIN FLOOR_PORT <<<"$(free_ports 6)"
start_bench_upstream "$UP_PORT"

shipped_config "$WORK/payguard.toml" "$PG_PORT" "$PG_ADMIN" "$UP_PORT" "$WORK/payguard-store"
shipped_config "$WORK/shipped.toml" "$SH_PORT" "$SH_ADMIN" "$UP_PORT" "$WORK/shipped-store" \
  embedded info on
declare -A PORT=([payguard]="$PG_PORT" [shipped]="$SH_PORT" [floor]="$FLOOR_PORT")
for target in payguard shipped; do
  taskset -c 1 "$PAYGUARD_BIN" run --config "$WORK/$target.toml" >"$WORK/$target.log" 2>&1 &
  PIDS[$target]=$!
done
taskset -c 1 "$FLOOR_BIN" --port "$FLOOR_PORT" --upstream "127.0.0.1:$UP_PORT" --mode conn \
  >"$WORK/floor.log" 2>&1 &
PIDS[floor]=$!
for target in payguard shipped floor; do
  wait_port "${PORT[$target]}" "${PIDS[$target]}" "$target" "$WORK/$target.log"
done

# Warms TARGET up with WARMUP requests, then runs the load command after them, the URL last,
# under strace. Usage: traced TARGET WARMUP COMMAND...
traced() {
  local target="$1" warmup="$2" url="http://127.0.0.1:${PORT[$1]}$REQUEST_PATH" tracer
  shift 2
  "$LOAD_BIN" --url "$url" --requests "$warmup" --connections 4 >/dev/null
  strace -c -f -p "${PIDS[$target]}" -o "$OUT/$target.strace" 2>/dev/null &
  tracer=$!
  sleep 1
  "$@" "$url" >"$OUT/$target-load.json"
  sleep 0.5
  kill -INT "$tracer"
  wait "$tracer" || true
}
for target in payguard floor; do
  log "$target: $REQUESTS requests over $CONNS connections, traced"
  traced "$target" 2000 "$LOAD_BIN" --requests "$REQUESTS" --connections "$CONNS" --url
done
log "shipped: $PACED requests at $RATE/s, traced"
# Its warm-up passes the limiter too (its burst, then 9.8/s): a few requests only.
traced shipped 20 taskset -c 0 oha -n "$PACED" -q "$RATE" -c 4 --no-tui --output-format json

# strace -c's rows: % time, seconds, usecs/call, calls, [errors,] syscall.
python3 - "$OUT" "$REQUESTS" "$PACED" >"$OUT/table.md" <<'PY'
import sys
out, requests, paced = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def calls(target):
    counts = {}
    for line in open(f"{out}/{target}.strace"):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            counts[f[-1]] = int(f[3])
    return counts
rows = [
    ("payguard, limiter off, at load", calls("payguard"), requests),
    ("floor, at load", calls("floor"), requests),
    (f"payguard as shipped, {paced} at the limiter's pace", calls("shipped"), paced),
]
print("| syscalls per request | " + " | ".join(name for name, _, _ in rows) + " |")
print("| --- |" + " ---: |" * len(rows))
names = set().union(*(c for _, c, _ in rows))
for name in sorted(names, key=lambda n: -sum(c.get(n, 0) / r for _, c, r in rows)):
    per = [c.get(name, 0) / r for _, c, r in rows]
    if max(per) >= 0.001:
        print(f"| `{name}` | " + " | ".join(f"{v:.3f}" for v in per) + " |")
print("| all | " + " | ".join(f"{sum(c.values()) / r:.3f}" for _, c, r in rows) + " |")
PY
cat "$OUT/table.md"

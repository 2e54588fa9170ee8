#!/usr/bin/env bash
# Syscalls per request, counted by strace: payguard (the shipped config.toml, limiter off,
# log level as shipped: info, a request line each) and the stack's floor (bench-floor --mode
# conn) relaying the same REQUESTS (20,000) pass-through GETs to the same upstream. Like
# instructions.sh, a count rather than a time: the kernel's share of a request's CPU is
# mostly its syscalls, and callgrind does not see them.
#
#   bash bench/overhead/syscalls.sh            # or SKIP_BUILD=1, REQUESTS=, CONNS=
#
# `strace -c -f` attaches after 2,000 warm-up requests and detaches after the load; strace
# slows the process, so only the counts mean anything, not the times it prints.
# Output: bench/out/syscalls/ (git-ignored): strace's tables and table.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
REQUESTS="${REQUESTS:-20000}"
CONNS="${CONNS:-8}"
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
read -r UP_PORT PG_PORT ADMIN FLOOR_PORT <<<"$(free_ports 4)"
start_bench_upstream "$UP_PORT"

shipped_config "$WORK/payguard.toml" "$PG_PORT" "$ADMIN" "$UP_PORT" "$WORK/store"
taskset -c 1 "$PAYGUARD_BIN" run --config "$WORK/payguard.toml" >"$WORK/payguard.log" 2>&1 &
PIDS[payguard]=$!
taskset -c 1 "$FLOOR_BIN" --port "$FLOOR_PORT" --upstream "127.0.0.1:$UP_PORT" --mode conn \
  >"$WORK/floor.log" 2>&1 &
PIDS[floor]=$!
wait_port "$PG_PORT" "${PIDS[payguard]}" payguard "$WORK/payguard.log"
wait_port "$FLOOR_PORT" "${PIDS[floor]}" bench-floor "$WORK/floor.log"

declare -A PORT=([payguard]="$PG_PORT" [floor]="$FLOOR_PORT")
{
  echo "| syscall | payguard per request | floor per request |"
  echo "| --- | ---: | ---: |"
} >"$OUT/table.md"
for target in payguard floor; do
  url="http://127.0.0.1:${PORT[$target]}$REQUEST_PATH"
  "$LOAD_BIN" --url "$url" --requests 2000 --connections "$CONNS" >/dev/null
  strace -c -f -p "${PIDS[$target]}" -o "$OUT/$target.strace" 2>/dev/null &
  tracer=$!
  sleep 1
  log "$target: $REQUESTS requests over $CONNS connections, traced"
  "$LOAD_BIN" --url "$url" --requests "$REQUESTS" --connections "$CONNS" >"$OUT/$target-load.json"
  sleep 0.5
  kill -INT "$tracer"
  wait "$tracer" || true
done
# strace -c's rows: % time, seconds, usecs/call, calls, [errors,] syscall.
python3 - "$OUT" "$REQUESTS" >>"$OUT/table.md" <<'EOF'
import sys
out, requests = sys.argv[1], int(sys.argv[2])
def calls(target):
    counts = {}
    for line in open(f"{out}/{target}.strace"):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            counts[f[-1]] = int(f[3])
    return counts
p, fl = calls("payguard"), calls("floor")
for name in sorted(set(p) | set(fl), key=lambda n: -(p.get(n, 0) + fl.get(n, 0))):
    a, b = p.get(name, 0) / requests, fl.get(name, 0) / requests
    if a >= 0.001 or b >= 0.001:
        print(f"| {name} | {a:.3f} | {b:.3f} |")
print(f"| all | {sum(p.values()) / requests:.3f} | {sum(fl.values()) / requests:.3f} |")
EOF
cat "$OUT/table.md"

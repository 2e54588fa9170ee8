#!/usr/bin/env bash
# Instructions per request, counted by callgrind: payguard and nginx in front of the same
# upstream, a fixed REQUESTS (20,000) each. Unlike the timed figures of run.sh, instruction
# counts do not move with other people's builds on a shared machine, so this is the figure
# that decides whether a change made the request path cheaper.
#
#   bash bench/overhead/instructions.sh            # or SKIP_BUILD=1, REQUESTS=, CONNS=
#
# What is counted: every instruction of the proxy process, all its threads (callgrind follows
# every thread of the process it starts; --trace-children=no leaves out nothing of payguard,
# which execs nothing), from just after WARMUP_REQUESTS (500) warm-up requests to just after
# the last of the REQUESTS answers: callgrind_control dumps (and so resets) the counters after
# the warm-up and again after the load. Start-up (config, TLS roots, the store file) and shutdown are
# not in that figure; the whole-life total of each process is printed beside it, undivided.
# The kernel's work (syscalls, loopback TCP) is not counted by callgrind for anyone.
#
# Cases, each a fresh process under callgrind, the upstream and the load generator outside it:
#   payguard_get        the shipped config.toml, only the ports, the upstream URL and the store
#                       path changed, the limiter off: GET /v1/payment_intents/pi_… (route
#                       "reads"), log level as shipped (info: one line per request)
#   payguard_get_warn   the same with [log] level = "warn" (what run.sh's timed rows use)
#   payguard_post_mem   keyed POST /v1/payment_intents, each with a fresh Idempotency-Key,
#                       store = "memory" (the journal in memory too)
#   payguard_post_emb   the same on the shipped embedded (redb) store
#   nginx_get           nginx as in run.sh (1 worker, keepalive 64, access_log off), with
#                       master_process off and daemon off so the one process is the worker
#   floor_pool          bench-floor (bench/overhead/floor.rs): hyper's server and hyper-util's
#                       pooled client on one tokio thread and nothing else, the least any proxy
#                       on payguard's stack spends on the same GET
#   floor_conn          the same with one upstream connection per downstream one (no pool)
#
# Output: bench/out/instructions/ (git-ignored): callgrind files, summary.json, table.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
REQUESTS="${REQUESTS:-20000}"
WARMUP_REQUESTS="${WARMUP_REQUESTS:-500}"
CONNS="${CONNS:-8}"
CASES="${CASES:-payguard_get payguard_get_warn payguard_post_mem payguard_post_emb nginx_get floor_pool floor_conn}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="$ROOT/bench/out/instructions"
REQUEST_PATH="/v1/payment_intents/pi_3PbenchUpstream0001"
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[instructions %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

command -v valgrind >/dev/null || die "valgrind missing (apt-get install valgrind)"
command -v nginx >/dev/null || die "nginx missing (apt-get install nginx; run.sh installs it)"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  # Line tables give callgrind_annotate file:line; they change no generated code.
  CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-line-tables-only}" \
    cargo build --release --bin payguard --example bench-upstream --example bench-load \
    --example bench-floor
fi
PAYGUARD_BIN="$TARGET_DIR/release/payguard"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
LOAD_BIN="$TARGET_DIR/release/examples/bench-load"
FLOOR_BIN="$TARGET_DIR/release/examples/bench-floor"

bench_workdir instructions
chmod 755 "$WORK"
rm -rf "$OUT"
mkdir -p "$OUT"

read -r UP_PORT PORT ADMIN <<<"$(free_ports 3)"
start_bench_upstream "$UP_PORT"

# The shipped config.toml with only what must change here (bench/common.sh): ports, upstream
# URL, store path, the limiter off, and per case the store or the log level.
payguard_config() {
  shipped_config "$WORK/payguard.toml" "$PORT" "$ADMIN" "$UP_PORT" "$WORK/store" "$1" "$2"
}

nginx_config() {
  mkdir -p "$WORK/nginx/temp"
  cat >"$WORK/nginx/nginx.conf" <<EOF
master_process off;
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/temp/body;
    proxy_temp_path $WORK/nginx/temp/proxy;
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# Sends n requests of the case's kind; prints bench-load's JSON.
load() {
  local case="$1" n="$2"
  local args=(--url "http://127.0.0.1:$PORT$REQUEST_PATH" --requests "$n"
    --connections "$CONNS")
  if [[ "$case" == payguard_post_* ]]; then
    args=(--url "http://127.0.0.1:$PORT/v1/payment_intents" --requests "$n"
      --connections "$CONNS" --method POST --keyed)
  fi
  taskset -c 0 "$LOAD_BIN" "${args[@]}"
}

# The Ir total of a callgrind output file.
total_ir() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

for case in $CASES; do
  rm -rf "$WORK/store"
  callgrind=(valgrind --tool=callgrind --trace-children=no --dump-instr=no
    --callgrind-out-file="$OUT/$case.callgrind")
  case "$case" in
    nginx_get)
      nginx_config
      taskset -c 1 "${callgrind[@]}" nginx -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" \
        >"$WORK/$case.log" 2>&1 &
      ;;
    floor_*)
      taskset -c 1 "${callgrind[@]}" "$FLOOR_BIN" --port "$PORT" \
        --upstream "127.0.0.1:$UP_PORT" --mode "${case#floor_}" >"$WORK/$case.log" 2>&1 &
      ;;
    *)
      store=embedded level=info
      [[ "$case" == payguard_post_mem ]] && store=memory
      [[ "$case" == payguard_get_warn ]] && level=warn
      payguard_config "$store" "$level"
      taskset -c 1 "${callgrind[@]}" "$PAYGUARD_BIN" run --config "$WORK/payguard.toml" \
        >"$WORK/$case.log" 2>&1 &
      ;;
  esac
  pid=$!
  PIDS[$case]=$pid
  # Start-up under callgrind is slow: wait_port allows 10 s, so wait in rounds.
  for _ in 1 2 3 4 5 6; do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 5
  done
  wait_port "$PORT" "$pid" "$case" "$WORK/$case.log"
  log "$case: warm-up $WARMUP_REQUESTS requests"
  load "$case" "$WARMUP_REQUESTS" >"$OUT/$case-warmup.json"
  # Each dump writes the counts since the previous one and resets them: .1 holds start-up and
  # warm-up, .2 the measured requests, and the file written at exit the shutdown.
  callgrind_control -d "$case-startup" "$pid" >/dev/null
  log "$case: $REQUESTS requests over $CONNS connections"
  load "$case" "$REQUESTS" | tee "$OUT/$case-load.json" >&2
  callgrind_control -d "$case-measured" "$pid" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  unset "PIDS[$case]"
  measured="$(total_ir "$OUT/$case.callgrind.2")"
  whole="$(($(total_ir "$OUT/$case.callgrind.1") + measured + $(total_ir "$OUT/$case.callgrind")))"
  printf '{"case":"%s","requests":%s,"ir_measured":%s,"ir_whole_life":%s,"load":%s}\n' \
    "$case" "$REQUESTS" "$measured" "$whole" "$(cat "$OUT/$case-load.json")" >>"$OUT/summary.jsonl"
  log "$case: $((measured / REQUESTS)) instructions per request"
done

python3 - "$OUT/summary.jsonl" <<'EOF' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| case | requests | instructions per request | measured Ir | whole-life Ir (start-up to exit) | non-2xx | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    n = r["requests"]
    print(f"| {r['case']} | {n:,} | {r['ir_measured'] // n:,} | {r['ir_measured']:,} | {r['ir_whole_life']:,} | {r['load']['non_2xx']} | {r['load']['errors']} |")
EOF

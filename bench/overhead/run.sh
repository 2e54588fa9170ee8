#!/usr/bin/env bash
# Pass-through overhead, side by side in one run: the direct path to a fast local upstream,
# payguard (as shipped, and "bare" with its retry/limiter/breaker/idempotency machinery off),
# the stack's floor (bench-floor: hyper and tokio relaying with nothing else), nginx and
# HAProxy, each loaded by oha at the ceiling and at fixed rates.
#
#   bash bench/overhead/run.sh
#
# Installs what is missing (nginx and haproxy from Debian's packages, oha from crates.io), builds
# payguard and the bench upstream in release mode, then measures. Raw oha JSON and the per-phase
# CPU/RSS samples go to bench/out/overhead/ (git-ignored); the markdown table is printed at the
# end and saved as bench/out/overhead/table.md. Takes about 5 minutes on a quiet machine once
# everything is built; on a busy one up to QUIET_BUDGET + RETRIES x DURATION seconds more.
#
# Pinning (2 cores): the proxy under test runs on CPU 1; oha and the upstream share CPU 0.
# Every proxy is started once and stays up for the whole run (the idle ones cost nothing);
# the targets are measured one after another, never at the same time.
#
# Phases: pass 1, per target: warm-up, then the ceiling (no rate limit). Then the fixed rates
# are chosen from the ceilings: LOW_RATE (2000/s); "half load" = half of the lowest ceiling
# of payguard, nginx and HAProxy (so each of them runs at no more than half of its own
# capacity, and all rows share one rate, which the added-latency columns need); and half of
# the direct ceiling as a harder point. Pass 2, per target: a short warm-up, then each rate.
#
# The machine may be shared: each phase waits until other processes use at most QUIET_PCT
# (15) % of a core (at most QUIET_BUDGET, 120 s, of waiting per run), and a phase during which
# others used more than NOISE_PCT (10) % of a core is measured again (at most RETRIES, 6, per
# run). The report shows that share for every phase. The upstream, every proxy and oha run
# at the same raised priority (NICE, -10), so that other people's builds on a shared machine
# take what is left over rather than slices out of one target's tail latency; on a dedicated
# machine it changes nothing. Under autogroup scheduling the run gets a session of its own
# (setsid) and that session's group gets NICE too.
#
# Knobs (environment): DURATION (s per measured phase, 10), WARMUP (s, 3), CONNS (50),
# LOW_RATE (2000), UPSTREAM_THREADS (1), SKIP_BUILD=1 to reuse the built binaries, and the
# five above.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# With autogroup scheduling (most desktop and VM kernels), nice only ranks processes within
# one session's group; so the run moves into a session of its own, whose group gets NICE.
if [[ -z "${OVERHEAD_SESSION:-}" ]] && command -v setsid >/dev/null 2>&1; then
  # A background child is no process-group leader, so setsid execs in place: $! is the run.
  OVERHEAD_SESSION=1 setsid bash "${BASH_SOURCE[0]}" "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
  rc=0
  wait "$child" || rc=$?
  # A trapped signal ends the first wait early; wait for the run's own cleanup to finish.
  while kill -0 "$child" 2>/dev/null; do
    wait "$child" || rc=$?
  done
  exit "$rc"
fi

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNS="${CONNS:-50}"
LOW_RATE="${LOW_RATE:-2000}"
UPSTREAM_THREADS="${UPSTREAM_THREADS:-1}"
QUIET_PCT="${QUIET_PCT:-15}"
QUIET_BUDGET="${QUIET_BUDGET:-120}"
NOISE_PCT="${NOISE_PCT:-10}"
RETRIES="${RETRIES:-6}"
NICE="${NICE:--10}"
CLK_TCK="$(getconf CLK_TCK)"
if [[ -w /proc/self/autogroup ]]; then
  echo "$NICE" >"/proc/$$/autogroup" 2>/dev/null || true
fi
LOAD_CPU=0
PROXY_CPU=1
# The rows of the table. payguard_bare is payguard with its retry/limiter/breaker/idempotency
# machinery off; floor is bench-floor (bench/overhead/floor.rs, --mode conn): hyper's server
# relaying to hyper's client on one tokio thread with nothing else, the least any proxy on
# payguard's stack spends, so its row says which targets the stack itself can reach. The
# targets of the issue are judged on "payguard" (as shipped).
TARGETS=(direct payguard payguard_bare floor nginx haproxy)
OUT="$ROOT/bench/out/overhead"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# A realistic request: a read of a payment intent with an API key, as the Stripe SDK sends it.
REQUEST_PATH="/v1/payment_intents/pi_3PbenchUpstream0001"
AUTH_HEADER="Authorization: Bearer sk_test_bench_not_a_real_key"

log() { printf '[overhead %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------- cleanup
WORK=""
declare -A PIDS=()

# Process, port and quiet-machine helpers shared by the benchmarks.
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local name
  for name in "${!PIDS[@]}"; do
    stop_pid "${PIDS[$name]}"
  done
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------- install
(($(nproc) >= 2)) || die "needs at least 2 CPUs to pin the proxy apart from the load generator"

APT_UPDATED=0
apt_install() {
  if ((APT_UPDATED == 0)); then
    apt-get update -q
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"
need nginx || apt_install nginx
need haproxy || apt_install haproxy
need taskset || apt_install util-linux
need curl || apt_install curl
need python3 || apt_install python3
if ! need oha; then
  log "installing oha (compiles for several minutes)"
  nice -n 10 cargo install oha --locked
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building payguard and bench-upstream (release)"
  cargo build --release --bin payguard --example bench-upstream --example bench-floor
fi
PAYGUARD_BIN="$TARGET_DIR/release/payguard"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
FLOOR_BIN="$TARGET_DIR/release/examples/bench-floor"
[[ -x "$PAYGUARD_BIN" && -x "$UPSTREAM_BIN" && -x "$FLOOR_BIN" ]] ||
  die "release binaries missing under $TARGET_DIR"

WORK="$(mktemp -d /tmp/payguard-overhead.XXXXXX)"
# nginx workers drop to an unprivileged user and must reach their temp directories.
chmod 755 "$WORK"
rm -rf "$OUT"
mkdir -p "$OUT"

# ---------------------------------------------------------------------------- helpers
# Command prefixes that pin to a CPU at the benchmark's priority. Both exec, so a process
# started in the background with them keeps the PID that $! reports.
ON_LOAD_CPU=(nice -n "$NICE" taskset -c "$LOAD_CPU")
ON_PROXY_CPU=(nice -n "$NICE" taskset -c "$PROXY_CPU")





# VmHWM in KiB, summed over the given pids.
peak_rss_kib() {
  local total=0 pid kib
  for pid in "$@"; do
    kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# Busy and total jiffies of CPU 0 and CPU 1, as "busy0,total0,busy1,total1".
cpu_snapshot() {
  awk '$1 == "cpu0" || $1 == "cpu1" {
         total = 0; for (i = 2; i <= NF; i++) total += $i
         idle = $5 + $6
         out = out sep (total - idle) "," total; sep = ","
       }
       END { print out }' /proc/stat
}

# ---------------------------------------------------------------------------- targets
read -r UP_PORT PG_PORT PG_ADMIN BARE_PORT BARE_ADMIN FLOOR_PORT NGINX_PORT HAPROXY_PORT \
  <<<"$(free_ports 8)"
declare -A PORT=([direct]="$UP_PORT" [payguard]="$PG_PORT" [payguard_bare]="$BARE_PORT"
  [floor]="$FLOOR_PORT" [nginx]="$NGINX_PORT" [haproxy]="$HAPROXY_PORT")

start_upstream() {
  "${ON_LOAD_CPU[@]}" "$UPSTREAM_BIN" --port "$UP_PORT" --threads "$UPSTREAM_THREADS" \
    >"$WORK/upstream.log" 2>&1 &
  PIDS[upstream]=$!
  wait_port "$UP_PORT" "${PIDS[upstream]}" "bench-upstream" "$WORK/upstream.log"
}

# payguard as shipped ("payguard": the shipped config.toml, log level info with its line per
# request, retries, retry budget, breaker, embedded idempotency store and journal at their
# defaults, through bench/common.sh's shipped_config) with the limiter off: its 9.8/s is a
# Stripe account's limit and would make this a test of the limiter. "payguard_bare" has the
# rest of that machinery off too, which shows what it costs.
start_payguard() {
  local variant="$1" port="$2" admin="$3"
  mkdir -p "$WORK/$variant"
  if [[ "$variant" == payguard ]]; then
    shipped_config "$WORK/$variant/payguard.toml" "$port" "$admin" "$UP_PORT" "$WORK/$variant/store"
  else
    # Keep-alive to the upstream, fairly: up to 64 idle connections, as nginx's `keepalive 64`.
    cat >"$WORK/$variant/payguard.toml" <<EOF
[listen]
proxy = "127.0.0.1:$port"
admin = "127.0.0.1:$admin"

[upstream]
url = "http://127.0.0.1:$UP_PORT"
pool_max_idle_per_host = 64

[server]
worker_threads = 1
drain_timeout = "1s"

[log]
level = "warn"

[retry]
max_attempts = 1

[rate_limit]
enabled = false

[breaker]
enabled = false

[idempotency]
store = "memory"
inject_keys = false
EOF
    "$PAYGUARD_BIN" check --config "$WORK/$variant/payguard.toml" >/dev/null ||
      die "payguard rejected the generated config $WORK/$variant/payguard.toml"
  fi
  "${ON_PROXY_CPU[@]}" "$PAYGUARD_BIN" run --config "$WORK/$variant/payguard.toml" \
    >"$WORK/$variant.log" 2>&1 &
  PIDS[$variant]=$!
  wait_port "$port" "${PIDS[$variant]}" "$variant" "$WORK/$variant.log"
}

# One upstream connection per client connection, as nginx's per-worker keep-alive behaves.
start_floor() {
  "${ON_PROXY_CPU[@]}" "$FLOOR_BIN" --port "$FLOOR_PORT" --upstream "127.0.0.1:$UP_PORT" \
    --mode conn >"$WORK/floor.log" 2>&1 &
  PIDS[floor]=$!
  wait_port "$FLOOR_PORT" "${PIDS[floor]}" "bench-floor" "$WORK/floor.log"
}

start_nginx() {
  local dir="$WORK/nginx"
  mkdir -p "$dir/temp"
  # keepalive_requests is raised on both sides: nginx's default of 1000 would close client
  # and upstream connections that payguard and HAProxy keep open, and count reconnects
  # against nginx alone.
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/temp/body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;

    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  nginx -t -q -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf" -g 'daemon off;' ||
    die "nginx rejected $dir/nginx.conf"
  "${ON_PROXY_CPU[@]}" nginx -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf" \
    -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
  PIDS[nginx]=$!
  wait_port "$NGINX_PORT" "${PIDS[nginx]}" "nginx" "$dir/error.log"
}

start_haproxy() {
  # http-reuse always: idle upstream connections are shared by every client connection, the
  # closest match to payguard's and nginx's pools. No log lines: nothing is logged.
  cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend bench_upstream

backend bench_upstream
    server upstream 127.0.0.1:$UP_PORT
EOF
  haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy rejected $WORK/haproxy.cfg"
  "${ON_PROXY_CPU[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  PIDS[haproxy]=$!
  wait_port "$HAPROXY_PORT" "${PIDS[haproxy]}" "haproxy" "$WORK/haproxy.log"
}

# One request through a target must return the upstream's body unchanged.
smoke() {
  local target="$1" body
  body="$(curl -fsS --max-time 5 -H "$AUTH_HEADER" "http://127.0.0.1:${PORT[$target]}$REQUEST_PATH")" ||
    die "$target: smoke request failed"
  [[ "$body" == *'"object":"payment_intent"'* ]] || die "$target: unexpected body: $body"
}

# ---------------------------------------------------------------------------- measuring
# oha pinned on the load CPU with one worker thread. -w waits for in-flight requests at the
# deadline instead of counting them as errors. At fixed rates latency is corrected for
# coordinated omission (measured from when each request was due, not when it was sent).
oha_run() {
  local target="$1" seconds="$2" rate="$3" out="$4"
  local args=(-z "${seconds}s" -c "$CONNS" -w --no-tui --worker-threads 1
    --output-format json -o "$out" -H "$AUTH_HEADER")
  if [[ "$rate" != 0 ]]; then
    args+=(-q "$rate" --latency-correction)
  fi
  "${ON_LOAD_CPU[@]}" oha "${args[@]}" "http://127.0.0.1:${PORT[$target]}$REQUEST_PATH" \
    >/dev/null
}

# CPU ticks the script's finished children used so far (oha runs as one of them).
children_ticks() {
  local -a f
  read -r -a f <<<"$(sed -e 's/^.*) //' "/proc/$$/stat")"
  # cutime (16) and cstime (17), shifted like in cpu_ticks.
  echo $((f[13] + f[14]))
}



# Other engineers may share this machine: before a phase, wait (within a total budget) until
# the machine is quiet, so a compile next door does not land in one target's numbers only.

# Runs one measured phase and appends its CPU samples to phases.jsonl. "foreign" is the CPU
# time of user processes outside this run (see others_ticks). A phase where it exceeds
# NOISE_PCT of a core is measured again, within a total of RETRIES repeats for the run; its
# last attempt counts.
RETRIES_LEFT="$RETRIES"
measure() {
  local target="$1" phase="$2" rate="$3"
  local pids=() attempt wall proxy up kids foreign_pct
  local proxy0 proxy1 up0 up1 kids0 kids1 others0 others1 snap0 snap1 t0 t1
  if [[ "$target" != direct ]]; then
    read -r -a pids <<<"$(proc_tree "${PIDS[$target]}")"
  fi
  for ((attempt = 1; ; attempt++)); do
    wait_quiet
    log "$target: $phase (rate ${rate/#0/unlimited}, ${DURATION}s, $CONNS connections)"
    proxy0="$(cpu_ticks "${pids[@]}")"
    up0="$(cpu_ticks "${PIDS[upstream]}")"
    kids0="$(children_ticks)"
    snap0="$(cpu_snapshot)"
    others0="$(others_ticks)"
    t0="$(date +%s.%N)"
    oha_run "$target" "$DURATION" "$rate" "$OUT/$target-$phase.json"
    t1="$(date +%s.%N)"
    others1="$(others_ticks)"
    snap1="$(cpu_snapshot)"
    kids1="$(children_ticks)"
    up1="$(cpu_ticks "${PIDS[upstream]}")"
    proxy1="$(cpu_ticks "${pids[@]}")"
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    proxy=$((proxy1 - proxy0))
    up=$((up1 - up0))
    kids=$((kids1 - kids0))
    foreign_pct="$(awk -v f=$((others1 - others0)) -v w="$wall" -v hz="$CLK_TCK" \
      'BEGIN { printf "%.1f", 100 * f / (w * hz) }')"
    printf '{"target":"%s","phase":"%s","rate":%s,"attempt":%s,"wall_s":%s,"proxy_ticks":%s,"upstream_ticks":%s,"loadgen_ticks":%s,"foreign_core_pct":%s,"clk_tck":%s,"cpu_before":[%s],"cpu_after":[%s],"pids":"%s"}\n' \
      "$target" "$phase" "$rate" "$attempt" "$wall" \
      "$([[ "$target" == direct ]] && echo null || echo "$proxy")" \
      "$up" "$kids" "$foreign_pct" "$CLK_TCK" "$snap0" "$snap1" "${pids[*]:-}" \
      >>"$OUT/phases.jsonl"
    if awk -v f="$foreign_pct" -v max="$NOISE_PCT" 'BEGIN { exit !(f <= max) }'; then
      return 0
    fi
    if ((RETRIES_LEFT <= 0)); then
      log "$target: $phase: others used ${foreign_pct}% of a core during it; no repeats left, kept"
      return 0
    fi
    RETRIES_LEFT=$((RETRIES_LEFT - 1))
    log "$target: $phase: others used ${foreign_pct}% of a core during it; measuring again"
  done
}

warm_up() {
  local target="$1" seconds="$2"
  log "$target: warm-up ${seconds}s"
  oha_run "$target" "$seconds" 0 "$WORK/$target-warmup.json"
}

# ---------------------------------------------------------------------------- run
log "starting bench-upstream on 127.0.0.1:$UP_PORT (CPU $LOAD_CPU, $UPSTREAM_THREADS thread(s))"
start_upstream
log "starting payguard :$PG_PORT, payguard_bare :$BARE_PORT, floor :$FLOOR_PORT," \
  "nginx :$NGINX_PORT, haproxy :$HAPROXY_PORT (CPU $PROXY_CPU)"
start_payguard payguard "$PG_PORT" "$PG_ADMIN"
start_payguard payguard_bare "$BARE_PORT" "$BARE_ADMIN"
start_floor
start_nginx
start_haproxy
for target in "${TARGETS[@]}"; do
  smoke "$target"
done

log "pass 1: ceilings"
for target in "${TARGETS[@]}"; do
  warm_up "$target" "$WARMUP"
  measure "$target" ceiling 0
done

rps() { python3 "$ROOT/bench/overhead/report.py" rps "$1"; }
DIRECT_CEILING="$(rps "$OUT/direct-ceiling.json")"
SLOWEST_CEILING="$(for t in payguard nginx haproxy; do rps "$OUT/$t-ceiling.json"; done | sort -n | head -1)"
# Rounded down to a multiple of 100, so the rates never exceed half.
# shellcheck disable=SC2017
HALF_RATE=$((SLOWEST_CEILING / 200 * 100))
# shellcheck disable=SC2017
HALF_DIRECT_RATE=$((DIRECT_CEILING / 200 * 100))
((HALF_RATE > 0)) || die "a proxy's ceiling is too low to derive a rate from: $SLOWEST_CEILING req/s"
log "ceilings: direct $DIRECT_CEILING req/s, slowest proxy $SLOWEST_CEILING req/s"
log "fixed rates: low $LOW_RATE, half load $HALF_RATE, half of direct $HALF_DIRECT_RATE"

log "pass 2: fixed rates"
for target in "${TARGETS[@]}"; do
  warm_up "$target" 2
  measure "$target" low "$LOW_RATE"
  measure "$target" half "$HALF_RATE"
  measure "$target" half_direct "$HALF_DIRECT_RATE"
done

# Peak RSS over the whole run: VmHWM of every process of each proxy (and of the upstream).
{
  printf '{'
  sep=""
  for name in upstream payguard payguard_bare floor nginx haproxy; do
    read -r -a pids <<<"$(proc_tree "${PIDS[$name]}")"
    printf '%s"%s":{"vmhwm_kib":%s,"pids":"%s"}' "$sep" "$name" "$(peak_rss_kib "${pids[@]}")" "${pids[*]}"
    sep=","
  done
  printf '}\n'
} >"$OUT/rss.json"

# Everything about the run that the table's reader needs to reproduce it.
python3 - "$OUT/meta.json" <<EOF
import json, sys
meta = {
    "date_utc": "$(date -u '+%Y-%m-%d %H:%M:%S UTC')",
    "command": "bash bench/overhead/run.sh",
    "knobs": {"DURATION": $DURATION, "WARMUP": $WARMUP, "CONNS": $CONNS, "LOW_RATE": $LOW_RATE,
              "UPSTREAM_THREADS": $UPSTREAM_THREADS, "QUIET_PCT": $QUIET_PCT,
              "QUIET_BUDGET": $QUIET_BUDGET, "NOISE_PCT": $NOISE_PCT, "RETRIES": $RETRIES,
              "NICE": $NICE},
    "nproc": $(nproc),
    "cpu_model": """$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)""",
    "kernel": "$(uname -r)",
    "nginx": """$(nginx -v 2>&1 | sed 's/^nginx version: //')""",
    "haproxy": """$(haproxy -v | head -1)""",
    "oha": "$(oha --version)",
    "payguard_commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
    # Uncommitted changes that go into the payguard build, if any (others may be editing).
    "payguard_uncommitted": """$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | tr '\n' ';')""",
    "pinning": "proxy under test on CPU $PROXY_CPU; oha (1 worker thread) and bench-upstream ($UPSTREAM_THREADS thread) on CPU $LOAD_CPU; all at nice $NICE ($(cat /proc/self/autogroup 2>/dev/null || echo 'no autogroup'))",
    "duration_s": $DURATION,
    "warmup_s": $WARMUP,
    "connections": $CONNS,
    "request": "GET $REQUEST_PATH with an Authorization header; 333-byte JSON answer",
    "targets": "${TARGETS[*]}".split(),
    "rates": {"low": $LOW_RATE, "half": $HALF_RATE, "half_direct": $HALF_DIRECT_RATE},
    "quiet_pct": $QUIET_PCT,
    "quiet_waited_s": $QUIET_WAITED,
    "noise_pct": $NOISE_PCT,
    "repeats": $((RETRIES - RETRIES_LEFT)),
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF

# Anything a target said during the run. payguard as shipped logs a line per request at info,
# so of its log only the warnings and errors are kept (the request lines are counted).
if [[ -f "$WORK/payguard.log" ]]; then
  log "payguard.log: $(grep -c ' INFO ' "$WORK/payguard.log" || true) info lines"
  grep -v ' INFO ' "$WORK/payguard.log" >"$WORK/payguard-problems.log" || true
  rm -f "$WORK/payguard.log"
fi
for file in payguard-problems.log payguard_bare.log floor.log nginx.log nginx/error.log haproxy.log upstream.log; do
  if [[ -s "$WORK/$file" ]] && grep -qv 'listening on' "$WORK/$file"; then
    log "$file is not empty (last lines, full copy in $OUT/logs/):"
    tail -n 5 "$WORK/$file" >&2
  fi
done
mkdir -p "$OUT/logs"
cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
cp "$WORK/nginx/error.log" "$OUT/logs/nginx-error.log" 2>/dev/null || true
python3 "$ROOT/bench/overhead/report.py" table "$OUT" | tee "$OUT/table.md"

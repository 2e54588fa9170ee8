#!/usr/bin/env bash
# Large uploads through payguard, side by side in one run: the direct path to bench-upstream,
# payguard streaming them (a route with max_upload_bytes), payguard buffering them (no
# max_upload_bytes, a replay buffer as large as an upload: what streaming saves), and nginx
# with proxy_request_buffering off, all in front of the same upstream.
#
#   bash bench/uploads/run.sh
#
# Installs nginx (Debian's package) when missing, builds payguard and bench-upstream in release
# mode, then measures. Raw numbers go to bench/out/uploads.json, the markdown table to
# bench/out/uploads.md (both git-ignored; the table is printed at the end too). About a minute
# on a quiet machine once built.
#
# Load (client.py): CLIENTS (8) threads at once, each sending UPLOADS (4) multipart bodies of
# UPLOAD_MIB (64) MiB with Content-Length, one after another, each on a new connection; before
# it, a warm-up of one upload per client that is not counted. Targets are measured one after
# another; all stay up for the whole run.
#
# Pinning (2 cores), as in bench/overhead: the proxy under test on CPU 1, the client and the
# upstream on CPU 0, everything at nice NICE (-10) in a session of its own. Before each
# target the run waits (at most QUIET_BUDGET, 120 s, in all) until other processes use at most
# QUIET_PCT (15) % of a core, and measures a target again (at most RETRIES, 2, in all) when
# others used more than NOISE_PCT (10) % of a core during it.
#
# Per target: bytes, wall time, MiB/s, the proxy's RSS before the warm-up (VmRSS), its peak
# RSS over its whole life (VmHWM, which covers warm-up and load), RSS sampled every 0.1 s
# during the load, its CPU (utime + stime from /proc/PID/stat) per GiB, and the statuses.
#
# Knobs (environment): CLIENTS, UPLOADS, UPLOAD_MIB, OUT_NAME (uploads: the output files'
# name, e.g. OUT_NAME=uploads-256mib for a second run beside the first), SKIP_BUILD=1 to reuse
# the built binaries, and the ones above.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# nice only ranks processes within one autogroup; give the run a session (group) of its own.
if [[ -z "${UPLOADS_SESSION:-}" ]] && command -v setsid >/dev/null 2>&1; then
  UPLOADS_SESSION=1 setsid bash "${BASH_SOURCE[0]}" "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
  rc=0
  wait "$child" || rc=$?
  while kill -0 "$child" 2>/dev/null; do
    wait "$child" || rc=$?
  done
  exit "$rc"
fi

CLIENTS="${CLIENTS:-8}"
UPLOADS="${UPLOADS:-4}"
UPLOAD_MIB="${UPLOAD_MIB:-64}"
QUIET_PCT="${QUIET_PCT:-15}"
QUIET_BUDGET="${QUIET_BUDGET:-120}"
NOISE_PCT="${NOISE_PCT:-10}"
RETRIES="${RETRIES:-2}"
NICE="${NICE:--10}"
CLK_TCK="$(getconf CLK_TCK)"
if [[ -w /proc/self/autogroup ]]; then
  echo "$NICE" >"/proc/$$/autogroup" 2>/dev/null || true
fi
LOAD_CPU=0
PROXY_CPU=1
TARGETS=(direct payguard payguard_buffered nginx)
UPLOAD_BYTES=$((UPLOAD_MIB * 1024 * 1024))
# The streaming route's cap (256 MiB) and the buffering variant's replay buffer (one upload).
MAX_UPLOAD=268435456
OUT="$ROOT/bench/out"
OUT_NAME="${OUT_NAME:-uploads}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '[uploads %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1; }

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

# ---------------------------------------------------------------------------- install, build
(($(nproc) >= 2)) || die "needs at least 2 CPUs to pin the proxy apart from the client"
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"
if ! need nginx; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx
fi
need taskset || die "taskset (util-linux) is missing"
need python3 || die "python3 is missing"
need curl || die "curl is missing"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building payguard and bench-upstream (release)"
  cargo build --release --bin payguard --example bench-upstream
fi
PAYGUARD_BIN="$TARGET_DIR/release/payguard"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
[[ -x "$PAYGUARD_BIN" && -x "$UPSTREAM_BIN" ]] || die "release binaries missing under $TARGET_DIR"

WORK="$(mktemp -d /tmp/payguard-uploads.XXXXXX)"
chmod 755 "$WORK" # nginx workers run unprivileged and need their temp directories
mkdir -p "$OUT"
rm -f "$OUT/$OUT_NAME.json" "$OUT/$OUT_NAME.md"

ON_LOAD_CPU=(nice -n "$NICE" taskset -c "$LOAD_CPU")
ON_PROXY_CPU=(nice -n "$NICE" taskset -c "$PROXY_CPU")





# A /proc/PID/status field (VmRSS, VmHWM) in KiB, summed over the pids.
status_kib() {
  local field="$1" total=0 pid kib
  shift
  for pid in "$@"; do
    kib="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}




# ---------------------------------------------------------------------------- targets
read -r UP_PORT PG_PORT PG_ADMIN PB_PORT PB_ADMIN NGINX_PORT <<<"$(free_ports 6)"
declare -A PORT=([direct]="$UP_PORT" [payguard]="$PG_PORT" [payguard_buffered]="$PB_PORT"
  [nginx]="$NGINX_PORT")
declare -A ADMIN=([payguard]="$PG_ADMIN" [payguard_buffered]="$PB_ADMIN")

start_upstream() {
  "${ON_LOAD_CPU[@]}" "$UPSTREAM_BIN" --port "$UP_PORT" --threads 1 >"$WORK/upstream.log" 2>&1 &
  PIDS[upstream]=$!
  wait_port "$UP_PORT" "${PIDS[upstream]}" "bench-upstream" "$WORK/upstream.log"
}

# The route's deadline must stay under 80 s (the Stripe SDKs' timeout; payguard check refuses
# more), which bounds every upload here: reading the body counts against it.
# payguard: "payguard" streams uploads over the 1 MiB replay buffer (max_upload_bytes);
# "payguard_buffered" has no max_upload_bytes and a replay buffer of one upload, so it holds
# every upload in full before sending it, as payguard did before streaming existed.
start_payguard() {
  local variant="$1" port="$2" admin="$3" max_body upload_line
  if [[ "$variant" == payguard ]]; then
    max_body=1048576
    upload_line="max_upload_bytes = $MAX_UPLOAD"
  else
    max_body="$UPLOAD_BYTES"
    upload_line="# no max_upload_bytes: every upload is buffered"
  fi
  cat >"$WORK/$variant.toml" <<EOF
[listen]
proxy = "127.0.0.1:$port"
admin = "127.0.0.1:$admin"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[server]
worker_threads = 1
max_request_body_bytes = $max_body
drain_timeout = "1s"

[log]
level = "warn"

[rate_limit]
enabled = false

[idempotency]
store = "memory"

[[route]]
name = "file_uploads"
match = "POST /v1/files"
$upload_line
[route.retry]
attempt_timeout = "60s"
deadline = "75s"
EOF
  "$PAYGUARD_BIN" check --config "$WORK/$variant.toml" >/dev/null ||
    die "payguard rejected $WORK/$variant.toml"
  "${ON_PROXY_CPU[@]}" "$PAYGUARD_BIN" run --config "$WORK/$variant.toml" >"$WORK/$variant.log" 2>&1 &
  PIDS[$variant]=$!
  wait_port "$port" "${PIDS[$variant]}" "$variant" "$WORK/$variant.log"
}

start_nginx() {
  local dir="$WORK/nginx"
  mkdir -p "$dir/temp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $dir/temp/body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;

    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;
        client_max_body_size 0;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
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

# A small upload (under the replay buffer) must come back 200 with the upstream's body.
smoke() {
  local target="$1" body
  body="$(curl -fsS --max-time 5 -H 'Authorization: Bearer sk_test_bench_not_a_real_key' \
    -H 'Content-Type: multipart/form-data; boundary=x' --data-binary 'smoke' \
    "http://127.0.0.1:${PORT[$target]}/v1/files")" || die "$target: smoke upload failed"
  [[ "$body" == *'"object":"payment_intent"'* ]] || die "$target: unexpected body: $body"
}

client() {
  local target="$1" uploads="$2"
  shift 2
  "${ON_LOAD_CPU[@]}" python3 "$ROOT/bench/uploads/client.py" --port "${PORT[$target]}" \
    --clients "$CLIENTS" --uploads "$uploads" --size "$UPLOAD_BYTES" --watch "$@"
}

# ---------------------------------------------------------------------------- run
log "bench-upstream :$UP_PORT on CPU $LOAD_CPU; payguard :$PG_PORT, payguard_buffered :$PB_PORT," \
  "nginx :$NGINX_PORT on CPU $PROXY_CPU"
start_upstream
start_payguard payguard "$PG_PORT" "$PG_ADMIN"
start_payguard payguard_buffered "$PB_PORT" "$PB_ADMIN"
start_nginx
for target in "${TARGETS[@]}"; do
  smoke "$target"
done

RETRIES_LEFT="$RETRIES"
: >"$WORK/phases.jsonl"
for target in "${TARGETS[@]}"; do
  pids=()
  if [[ "$target" != direct ]]; then
    read -r -a pids <<<"$(proc_tree "${PIDS[$target]}")"
  fi
  rss_before="$(status_kib VmRSS "${pids[@]}")"
  log "$target: warm-up, $CLIENTS x 1 upload of $UPLOAD_MIB MiB"
  client "$target" 1 "${pids[@]}" >"$WORK/$target-warmup.json"
  for ((attempt = 1; ; attempt++)); do
    wait_quiet
    log "$target: $CLIENTS clients x $UPLOADS uploads of $UPLOAD_MIB MiB"
    proxy0="$(cpu_ticks "${pids[@]}")"
    up0="$(cpu_ticks "${PIDS[upstream]}")"
    others0="$(others_ticks)"
    t0="$(date +%s.%N)"
    client "$target" "$UPLOADS" "${pids[@]}" >"$WORK/$target-load.json"
    t1="$(date +%s.%N)"
    others1="$(others_ticks)"
    up1="$(cpu_ticks "${PIDS[upstream]}")"
    proxy1="$(cpu_ticks "${pids[@]}")"
    foreign_pct="$(awk -v f=$((others1 - others0)) -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" \
      'BEGIN { printf "%.1f", 100 * f / ((b - a) * hz) }')"
    log "$target: others used ${foreign_pct}% of a core"
    if awk -v f="$foreign_pct" -v max="$NOISE_PCT" 'BEGIN { exit !(f <= max) }' ||
      ((RETRIES_LEFT <= 0)); then
      break
    fi
    RETRIES_LEFT=$((RETRIES_LEFT - 1))
    log "$target: measuring again"
  done
  streamed=null
  if [[ -n "${ADMIN[$target]:-}" ]]; then
    streamed="$(curl -fsS "http://127.0.0.1:${ADMIN[$target]}/metrics" |
      awk '/^payguard_streamed_uploads_total/ { s += $NF } END { print s + 0 }')"
  fi
  # Proxy figures; the direct path has no proxy (None in the heredoc below is Python's).
  proxy_ticks=None rss_after=None vmhwm=None
  if [[ "$target" != direct ]]; then
    proxy_ticks=$((proxy1 - proxy0))
    rss_after="$(status_kib VmRSS "${pids[@]}")"
    vmhwm="$(status_kib VmHWM "${pids[@]}")"
  else
    rss_before=None
  fi
  [[ "$streamed" != null ]] || streamed=None
  python3 - "$WORK" "$target" <<EOF >>"$WORK/phases.jsonl"
import json, sys
work, target = sys.argv[1], sys.argv[2]
print(json.dumps({
    "target": target,
    "attempts": $attempt,
    "pids": "${pids[*]:-}",
    "proxy_ticks": $proxy_ticks,
    "upstream_ticks": $((up1 - up0)),
    "clk_tck": $CLK_TCK,
    "rss_before_kib": $rss_before,
    "rss_after_kib": $rss_after,
    "vmhwm_kib": $vmhwm,
    "upstream_vmhwm_kib": $(status_kib VmHWM "${PIDS[upstream]}"),
    "streamed_uploads_total": $streamed,
    "foreign_core_pct": $foreign_pct,
    "warmup": json.load(open(f"{work}/{target}-warmup.json")),
    "load": json.load(open(f"{work}/{target}-load.json")),
}))
EOF
done

python3 - "$WORK/meta.json" <<EOF
import json, sys
json.dump({
    "date_utc": "$(date -u '+%Y-%m-%d %H:%M:%S UTC')",
    "command": "bash bench/uploads/run.sh",
    "knobs": {"CLIENTS": $CLIENTS, "UPLOADS": $UPLOADS, "UPLOAD_MIB": $UPLOAD_MIB,
              "QUIET_PCT": $QUIET_PCT, "QUIET_BUDGET": $QUIET_BUDGET,
              "NOISE_PCT": $NOISE_PCT, "RETRIES": $RETRIES, "NICE": $NICE},
    "nproc": $(nproc),
    "cpu_model": """$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)""",
    "kernel": "$(uname -r)",
    "nginx": """$(nginx -v 2>&1 | sed 's/^nginx version: //')""",
    "python": "$(python3 --version 2>&1)",
    "payguard_commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
    "payguard_uncommitted": """$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | tr '\n' ';')""",
    "pinning": "proxy under test on CPU $PROXY_CPU; client.py and bench-upstream on CPU $LOAD_CPU; all at nice $NICE",
    "quiet_waited_s": $QUIET_WAITED,
    "repeats": $((RETRIES - RETRIES_LEFT)),
    "configs": {name: open(path).read() for name, path in [
        ("payguard", "$WORK/payguard.toml"),
        ("payguard_buffered", "$WORK/payguard_buffered.toml"),
        ("nginx", "$WORK/nginx/nginx.conf")]},
}, open(sys.argv[1], "w"), indent=2)
EOF

for file in payguard.log payguard_buffered.log nginx/error.log upstream.log; do
  if [[ -s "$WORK/$file" ]] && grep -qv 'listening on' "$WORK/$file"; then
    log "$file is not empty (last lines):"
    tail -n 5 "$WORK/$file" >&2
  fi
done
python3 "$ROOT/bench/uploads/report.py" "$WORK/meta.json" "$WORK/phases.jsonl" \
  "$OUT/$OUT_NAME.json" "$OUT/$OUT_NAME.md"
cat "$OUT/$OUT_NAME.md"

# Helpers shared by the benchmark scripts (bench/overhead, bench/uploads): stopping processes,
# free loopback ports, CPU and memory read from /proc, and waiting for a quiet machine (the
# machines these run on are shared). Sourced, not run: the caller defines `log` and `die`,
# and sets CLK_TCK, QUIET_PCT (how busy others may keep the machine, % of a core) and
# QUIET_BUDGET (the most seconds a run waits for quiet in all).
# shellcheck shell=bash

stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Free loopback ports, all distinct: the sockets stay bound until every port is chosen.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits (at most 10 s) until a TCP port accepts, failing early if the process died.
wait_port() {
  local port="$1" pid="$2" name="$3" logfile="$4" i
  for ((i = 0; i < 100; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "$name exited during start-up"
    fi
    sleep 0.1
  done
  tail -n 20 "$logfile" >&2 || true
  die "$name did not listen on 127.0.0.1:$port within 10 s"
}

# The process and its children (nginx: master and worker), as a space-separated list.
proc_tree() {
  local pid="$1" children
  children="$(ps -o pid= --ppid "$pid" 2>/dev/null || true)"
  echo "$pid" ${children:+$children}
}

# utime + stime, in clock ticks, summed over the given pids.
cpu_ticks() {
  local total=0 pid fields
  local -a f
  for pid in "$@"; do
    [[ -r "/proc/$pid/stat" ]] || continue
    # The command name (field 2) may hold spaces; cut everything up to its closing ')'.
    fields="$(sed -e 's/^.*) //' "/proc/$pid/stat")"
    read -r -a f <<<"$fields"
    # After the cut, field 3 (state) is f[0], so utime (14) is f[11] and stime (15) f[12].
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# CPU ticks used so far by every user process outside this script's own tree (other
# people's builds and tests), counting reaped children through their parents' cutime/cstime,
# so a compiler that starts and ends within a phase still shows. Kernel threads are left out.
others_ticks() {
  python3 - "$$" <<'EOF'
import os, sys
ours, procs = int(sys.argv[1]), {}
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        with open(f"/proc/{name}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        continue
    # After the command name: state, ppid, ... utime (14), stime, cutime, cstime (17).
    procs[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
def mine(pid):
    for _ in range(64):
        if pid == ours:
            return True
        if pid not in procs:
            return False
        pid = procs[pid][0]
    return False
print(sum(t for pid, (ppid, t) in procs.items()
          if pid != 2 and ppid != 2 and not mine(pid)))
EOF
}

# Ticks of all CPUs that were not idle, from /proc/stat: "wait_quiet" samples it.
busy_all() {
  awk '$1 == "cpu" { total = 0; for (i = 2; i <= NF; i++) total += $i; print total - $5 - $6 }' /proc/stat
}

QUIET_WAITED=0
wait_quiet() {
  local before after pct
  while :; do
    before="$(busy_all)"
    sleep 1
    after="$(busy_all)"
    pct=$(((after - before) * 100 / CLK_TCK))
    ((pct <= QUIET_PCT)) && return 0
    if ((QUIET_WAITED >= QUIET_BUDGET)); then
      log "machine still busy (${pct}% of a core used by others); measuring anyway"
      return 0
    fi
    log "other processes use ${pct}% of a core; waiting for quiet"
    QUIET_WAITED=$((QUIET_WAITED + 2))
    sleep 1
  done
}

# The shipped config.toml (of the checkout at $ROOT) with only what a benchmark must change:
# the proxy and admin ports (admin on loopback), the default upstream's URL, the store file's
# path, and the limiter off unless LIMITER is "on" (its 9.8/s is a Stripe account's limit, which
# would make the loaded benchmarks a test of the limiter); then per call STORE ("embedded" as
# shipped, or "memory") and LEVEL ("info" as shipped). Every other setting is the product's.
# Writes OUT and checks it.
# Usage: shipped_config OUT PROXY_PORT ADMIN_PORT UPSTREAM_PORT STORE_DIR [STORE] [LEVEL] [LIMITER]
shipped_config() {
  local out="$1" port="$2" admin="$3" upstream="$4" store_dir="$5"
  local store="${6:-embedded}" level="${7:-info}" limiter="${8:-off}" limiter_off=""
  if [[ "$limiter" == off ]]; then
    limiter_off='/^\[rate_limit\]/,/^\[/s/^enabled = true/enabled = false/'
  fi
  sed -e "s|^proxy = \"127.0.0.1:8080\"|proxy = \"127.0.0.1:$port\"|" \
    -e "s|^admin = \"0.0.0.0:9090\"|admin = \"127.0.0.1:$admin\"|" \
    -e "0,/^url = \"https:\/\/api.stripe.com\"/s||url = \"http://127.0.0.1:$upstream\"|" \
    -e "s|^path = \"data/idempotency.redb\"|path = \"$store_dir/idempotency.redb\"|" \
    -e "s|^store = \"embedded\"|store = \"$store\"|" \
    -e "s|^level = \"info\"|level = \"$level\"|" \
    -e "$limiter_off" \
    "$ROOT/config.toml" >"$out"
  "$PAYGUARD_BIN" check --config "$out" >/dev/null || die "payguard rejected $out"
}

# A scratch directory for one benchmark run, in WORK, and an EXIT trap that stops every process
# recorded in PIDS (NAME -> pid) and removes the directory. Usage: bench_workdir NAME
bench_workdir() {
  WORK="$(mktemp -d "/tmp/payguard-$1.XXXXXX")"
  declare -gA PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  local name
  for name in "${!PIDS[@]}"; do stop_pid "${PIDS[$name]}"; done
  rm -rf "$WORK"
}

# bench-upstream ($UPSTREAM_BIN) on CPU 0 with one thread, listening on PORT, as PIDS[upstream].
# Usage: start_bench_upstream PORT
start_bench_upstream() {
  taskset -c 0 "$UPSTREAM_BIN" --port "$1" --threads 1 >"$WORK/upstream.log" 2>&1 &
  PIDS[upstream]=$!
  wait_port "$1" "${PIDS[upstream]}" bench-upstream "$WORK/upstream.log"
}

#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then runs every test.
# Safe to run on a fresh machine of the project's kind (Debian, Rust stable, root).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo-nextest; then
  echo "installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

# `kill` sends SIGTERM/SIGHUP in the lifecycle and reload tests (procps); promtool and a real
# Prometheus server check the metrics (Debian's prometheus package); the tests/redis_*.rs
# start redis-server processes of their own (Debian's redis-server; they fail without it).
missing=()
missing_sdk=()
need kill || missing+=(procps)
{ need promtool && need prometheus; } || missing+=(prometheus)
need redis-server || missing+=(redis-server)
# tests/chaos_netns.rs: a network namespace (iproute2) with nftables reject and drop rules.
need ip || missing+=(iproute2)
need nft || missing+=(nftables)
# tests/postgres_*.rs: a database of their own on the machine's PostgreSQL (127.0.0.1:5432,
# user postgres, trust auth from loopback), and clusters of their own from initdb and pg_ctl
# (Debian's postgresql); they fail, never skip, without it.
{ need psql && need pg_ctlcluster && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } ||
  missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! pg_isready -q -h 127.0.0.1; then
  pg_version="$(ls /etc/postgresql | sort -V | tail -1)"
  hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  # The tests connect as postgres over loopback without a password, as on the dev machines.
  grep -q '^host all all 127.0.0.1/32 trust' "$hba" ||
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  echo "starting PostgreSQL $pg_version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
  pg_isready -h 127.0.0.1
fi

# The SDK end-to-end tests (tests/sdk.rs, tests/sdk_errors.rs) run the official SDKs:
# stripe-node from the committed lock file, stripe-python at the version the tests expect
# (their exception mapping was read from these versions' sources), Debian's python3-stripe.
need node && need npm || missing_sdk+=(nodejs npm)
need python3 || missing_sdk+=(python3 python3-pip)
# Debian's own python3-stripe (5.0.0), run with Debian's /usr/bin/python3.
[ -f /usr/lib/python3/dist-packages/stripe/__init__.py ] || missing_sdk+=(python3-stripe)
if [ ${#missing_sdk[@]} -gt 0 ]; then
  echo "installing ${missing_sdk[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_sdk[@]}" >/dev/null
fi
if [ ! -f tests/sdk/node/node_modules/stripe/package.json ]; then
  echo "installing stripe-node (npm ci)" >&2
  npm ci --prefix tests/sdk/node --no-audit --no-fund --loglevel=error
fi
STRIPE_PYTHON=16.1.0
if ! python3 -c "import stripe, sys; sys.exit(stripe.VERSION != '$STRIPE_PYTHON')" 2>/dev/null; then
  echo "installing stripe-python $STRIPE_PYTHON" >&2
  python3 -m pip install --quiet "stripe==$STRIPE_PYTHON" ||
    python3 -m pip install --quiet --break-system-packages "stripe==$STRIPE_PYTHON"
fi

# Deployment files: hadolint on the Dockerfile, Kubernetes schema validation of the
# manifests, and `payguard check` on the shipped configs (installs its Python tools).
cargo build --quiet --bin payguard
PAYGUARD="${CARGO_TARGET_DIR:-$PWD/target}/debug/payguard" bash deploy/check.sh

# The fuzz targets, built and run briefly each (installs cargo-fuzz when missing).
bash fuzz/smoke.sh

# Last, so its summary is the run's closing line. `failpoints` compiles in the crash points
# that tests/crash_points.rs kills payguard at (inert unless PAYGUARD_CRASH_AT names one).
cargo nextest run --workspace --all-targets --features failpoints --no-fail-fast

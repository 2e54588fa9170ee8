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
# Prometheus server check the metrics (Debian's prometheus package).
missing=()
need kill || missing+=(procps)
{ need promtool && need prometheus; } || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Deployment files: hadolint on the Dockerfile, Kubernetes schema validation of the
# manifests, and `payguard check` on the shipped configs (installs its Python tools).
cargo build --quiet --bin payguard
PAYGUARD="$PWD/target/debug/payguard" bash deploy/check.sh

# The fuzz targets, built and run briefly each (installs cargo-fuzz when missing).
bash fuzz/smoke.sh

# Last, so its summary is the run's closing line.
cargo nextest run --workspace --all-targets --no-fail-fast

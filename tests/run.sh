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

# `kill` sends SIGTERM/SIGHUP in the lifecycle and reload tests; procps provides it.
if ! need kill; then
  apt-get update -qq && apt-get install -y -qq procps
fi

# Deployment files: hadolint on the Dockerfile, Kubernetes schema validation of the
# manifests, and `payguard check` on the shipped configs (installs its Python tools).
cargo build --quiet --bin payguard
PAYGUARD="$PWD/target/debug/payguard" bash deploy/check.sh

# Last, so its summary is the run's closing line.
cargo nextest run --workspace --all-targets --no-fail-fast

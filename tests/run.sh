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

# `kill` sends SIGTERM in the drain test; procps provides it on minimal images.
if ! need kill; then
  apt-get update -qq && apt-get install -y -qq procps
fi

cargo nextest run --workspace --all-targets --no-fail-fast
cargo test --workspace --doc --quiet

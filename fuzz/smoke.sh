#!/usr/bin/env bash
# CI's share of fuzzing: build every cargo-fuzz target and run each briefly, starting from the
# committed seeds (fuzz/seeds/<target>/, minimised corpora of the long runs) plus, for the
# config target, the shipped configs. A crash fails CI and leaves its input in
# fuzz/artifacts/<target>/. Long runs are fuzz/long-run.sh, outside CI (see RELIABILITY.md).
#
# Only a stable toolchain is installed: cargo-fuzz's -Z flags are allowed by RUSTC_BOOTSTRAP=1.
# No sanitizer (payguard forbids unsafe code; the fuzzers look for panics and broken
# invariants) and a dev build with debug assertions, which compiles in a fraction of the time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-10}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build --fuzz-dir fuzz -s none --dev

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list --fuzz-dir fuzz); do
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  corpora=("$work/$target")
  [ -d "fuzz/seeds/$target" ] && corpora+=("fuzz/seeds/$target")
  if [ "$target" = config ]; then
    cp config.toml "$work/$target/shipped.toml"
    cp deploy/base/config.toml "$work/$target/deploy.toml"
  fi
  echo "fuzzing $target for ${seconds}s" >&2
  cargo fuzz run --fuzz-dir fuzz -s none --dev "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -artifact_prefix="fuzz/artifacts/$target/" 2>"$work/$target.log" \
    || { tail -n 40 "$work/$target.log" >&2; exit 1; }
  grep -E '^Done' "$work/$target.log" >&2
done

#!/usr/bin/env bash
# Runs every fuzz target in turn for a long while (not CI): `bash fuzz/long-run.sh [seconds]`.
# Builds once (release, debug assertions on, no sanitizer: payguard forbids unsafe code), then
# runs the built binaries one at a time on one core each, so editing the source meanwhile
# cannot change what is being fuzzed. Logs go to fuzz/logs/, crashes to fuzz/artifacts/<target>/,
# and the corpus grows in fuzz/corpus/<target>/ for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-900}"
targets=(config route retry_headers fingerprint classify)
bin=fuzz/bin
mkdir -p fuzz/logs "$bin"
# NO_BUILD=1 reruns the binaries of the last build.
if [ -z "${NO_BUILD:-}" ]; then
  RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz -s none
  for t in "${targets[@]}"; do
    cp "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "$bin/$t"
  done
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  if [ "$t" = config ]; then
    cp config.toml fuzz/corpus/config/seed-config.toml
    cp deploy/base/config.toml fuzz/corpus/config/seed-deploy.toml
  fi
  echo "$(date -u +%FT%TZ) start $t for ${seconds}s" | tee -a fuzz/logs/summary.txt
  status=0
  "$bin/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" \
    -timeout=10 -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1 || status=$?
  echo "$(date -u +%FT%TZ) end $t exit=$status $(grep -E '^Done' "fuzz/logs/$t.log" || true)" \
    | tee -a fuzz/logs/summary.txt
done

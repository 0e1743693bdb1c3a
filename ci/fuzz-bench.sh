#!/usr/bin/env bash
# Inputs per second of the three fuzzing tiers: the in-process tier (chaos I/O) and the
# real-socket tier of sockharness::fuzz::rig (criterion), and `sockharness fuzz` against the
# bundled echo server, started as a process and reused, from the basic echo seed.
# Usage: ci/fuzz-bench.sh [RUNS]   (default 20000 inputs for the fuzz command)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
cargo bench -p sockharness-benches --bench fuzz_tiers -- --warm-up-time 1 --measurement-time 3
cargo build --release --quiet
bin=$PWD/${CARGO_TARGET_DIR:-target}/release/sockharness
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== sockharness fuzz against the echo example, $runs inputs"
"$bin" fuzz --cmd "$bin serve echo --listen 127.0.0.1:{port}" \
  --seed-scenario crates/cli/tests/fuzz-seeds/echo.scenario --expect echo \
  --runs "$runs" --time 120s --seed 1 --out "$out" 2>/dev/null | tail -n 1

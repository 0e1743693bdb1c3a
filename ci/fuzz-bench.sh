#!/usr/bin/env bash
# Inputs per second of the three fuzzing tiers: the in-process tier (chaos I/O) and the
# real-socket tier of sockharness::fuzz::rig (criterion), and `sockharness fuzz` against the
# bundled echo server, started as a process and reused, from the basic echo seed; then, where
# AFL++ is installed, guided and blind side by side against crates/cli/tests/servers/
# token-server.c built with afl-clang-fast without its bug (-DNO_BUG, so that neither run stops
# at a finding), for the same time. Each summary line says when the
# first input ran and the rate from then.
# Usage: ci/fuzz-bench.sh [RUNS] [SECONDS]   (default 20000 inputs for the echo server, 20 s
# for each token-server run)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
secs=${2:-20}
cargo bench -p sockharness-benches --bench fuzz_tiers -- --warm-up-time 1 --measurement-time 3
cargo build --release --quiet
bin=$PWD/${CARGO_TARGET_DIR:-target}/release/sockharness
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== sockharness fuzz against the echo example, $runs inputs"
"$bin" fuzz --cmd "$bin serve echo --listen 127.0.0.1:{port}" \
  --seed-scenario crates/cli/tests/fuzz-seeds/echo.scenario --expect echo \
  --runs "$runs" --time 120s --seed 1 --out "$out" 2>/dev/null | tail -n 1
if ! command -v afl-clang-fast >/dev/null; then
  echo "== guided against blind: skipped, afl-clang-fast is missing (Debian: apt-get install afl++)"
  exit 0
fi
src=$PWD/crates/cli/tests/servers/token-server.c
cp crates/cli/tests/servers/token-server.scenario "$out/"
cd "$out"
AFL_QUIET=1 AFL_LLVM_LAF_ALL=1 AFL_LLVM_DICT2FILE="$out/token.dict" \
  afl-clang-fast -O1 -pthread -DNO_BUG -o token-server "$src"
for mode in guided blind; do
  flags=()
  [ "$mode" = guided ] && flags=(--coverage afl)
  echo "== sockharness fuzz $mode against token-server, ${secs}s"
  "$bin" fuzz --cmd "exec ./token-server {port}" --seed-scenario token-server.scenario \
    --dict token.dict "${flags[@]}" --time "${secs}s" --seed 1 --out "out-$mode" 2>/dev/null \
    | grep -E '^(FAIL|coverage|[0-9]+ inputs)' || true
done

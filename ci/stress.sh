#!/usr/bin/env bash
# Runs the whole scenario library N times (default 20) in a row while both cores are kept busy,
# and fails on the first run that does not pass. Bounded: the load stops after 15 minutes at the
# latest, and each run after 5.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/sockharness

load=()
for _ in 1 2; do
  timeout 900 sh -c 'while :; do :; done' &
  load+=($!)
done
trap 'kill "${load[@]}" 2>/dev/null || true' EXIT

for i in $(seq 1 "$runs"); do
  if ! out=$(timeout 300 "$bin" run scenarios 2>&1); then
    echo "$out"
    echo "stress: run $i of $runs failed under load"
    exit 1
  fi
  echo "stress: run $i of $runs: $(echo "$out" | tail -n 1)"
done
echo "stress: $runs of $runs runs passed under load"

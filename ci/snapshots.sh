#!/usr/bin/env bash
# The scenario library's snapshots (event traces and wire traces) N times in a row (default 20):
# a snapshot that changes between runs is a defect.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo test --quiet -p sockharness-scenarios --no-run
for i in $(seq 1 "$runs"); do
  if ! out=$(cargo test --quiet -p sockharness-scenarios 2>&1); then
    # insta's difference, then the failures.
    echo "$out" | sed -n '/Snapshot Summary/,/^Stopped on the first failure/p' | head -n 80
    echo "$out" | tail -n 40
    echo "snapshots: run $i of $runs differed"
    exit 1
  fi
done
echo "snapshots: stable over $runs runs"

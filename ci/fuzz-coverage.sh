#!/usr/bin/env bash
# Coverage-guided fuzzing against a server built with AFL++: crates/cli/tests/servers/
# token-server.c hides a crash behind a login token and a number. Built with afl-clang-fast
# (comparisons split, its string constants collected as a dictionary), `sockharness fuzz
# --coverage afl` must find the crash within the time, with a reproducer that fails under
# `sockharness run`; the same run without coverage, with the same dictionary and time, must
# not. The guided run also writes --stats (ProFuzzBench's CSV, which must hold its coverage)
# and shares its queue through --sync-dir (which must hold its entries in AFL++'s layout). A
# build without AFL++ must be refused with a clear error, not fuzzed blind.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${SOCKHARNESS_COVERAGE_TIME:-120s}
if ! command -v afl-clang-fast >/dev/null; then
  echo "fuzz-coverage: afl-clang-fast is missing (Debian: apt-get install afl++)" >&2
  exit 1
fi
cargo build --release --quiet
bin=$PWD/${CARGO_TARGET_DIR:-target}/release/sockharness
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=crates/cli/tests/servers/token-server.c
AFL_QUIET=1 AFL_LLVM_LAF_ALL=1 AFL_LLVM_DICT2FILE="$work/token.dict" \
  afl-clang-fast -O1 -pthread -o "$work/token-server" "$src"
cc -O1 -pthread -o "$work/token-server-plain" "$src"
cp crates/cli/tests/servers/token-server.scenario "$work/"
cd "$work"

status=0
run() { # name, then the fuzz flags; prints the summary, leaves the output in $name.out
  local name=$1
  shift
  set +e
  timeout 900 "$bin" fuzz --seed-scenario token-server.scenario --seed 1 --out "out-$name" \
    "$@" >"$name.out" 2>"$name.err"
  code=$?
  set -e
  echo "$name: exit $code; $(grep -m1 '^FAIL' "$name.out" || echo 'nothing found')"
  # A run refused before fuzzing has no summary: nothing to show is no failure.
  grep -E '^(coverage|[0-9]+ inputs)' "$name.out" | sed "s/^/  $name: /" || true
}

run guided --cmd "exec ./token-server {port}" --coverage afl --dict token.dict --time "$limit" \
  --stats guided.csv --sync-dir sync --sync-name guided
guided=$code
if ! head -n1 guided.csv | grep -qx 'time,subject,fuzzer,run,cov_type,cov' \
  || ! grep -q '^[0-9]*,token-server,sockharness,1,b_abs,[1-9]' guided.csv; then
  echo "fuzz-coverage: --stats did not write the run's coverage" >&2
  head -n 20 guided.csv >&2
  status=1
else
  echo "  stats: $(grep -c ',b_abs,' guided.csv) coverage rows, last $(grep ',b_abs,' guided.csv | tail -n1)"
fi
shared=$(find sync/guided/queue -name 'id:*' | wc -l)
if [ "$shared" -eq 0 ]; then
  echo "fuzz-coverage: --sync-dir holds none of the queue" >&2
  status=1
else
  echo "  sync: $shared entries in sync/guided/queue"
fi
if [ "$guided" -ne 1 ] || ! grep -q '^FAIL crash' guided.out; then
  echo "fuzz-coverage: the guided run did not find the crash" >&2
  tail -n 20 guided.out guided.err >&2
  status=1
else
  repro=$(sed -n 's/^  run it: sockharness run //p' guided.out | head -n1)
  if "$bin" run "$repro" >repro.out 2>&1; then
    echo "fuzz-coverage: the reproducer $repro passed" >&2
    cat "$repro" repro.out >&2
    status=1
  else
    echo "  reproducer fails under sockharness run, as it should: $(grep -m1 '^FAIL' repro.out)"
  fi
fi

run blind --cmd "exec ./token-server {port}" --dict token.dict --time "$limit"
if [ "$code" -ne 0 ]; then
  echo "fuzz-coverage: the blind run found something (exit $code), which the guided one needed coverage for" >&2
  tail -n 20 blind.out blind.err >&2
  status=1
fi

run plain --cmd "exec ./token-server-plain {port}" --coverage afl --time 10s
if [ "$code" -ne 2 ] || ! grep -q 'is not instrumented for coverage' plain.err; then
  echo "fuzz-coverage: a server without AFL++ instrumentation was not refused clearly (exit $code)" >&2
  cat plain.out plain.err >&2
  status=1
else
  echo "  $(grep -m1 'not instrumented' plain.err | cut -c1-160)..."
fi
exit $status

#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a bounded time from its committed
# seeds (copied, so the seeds stay as committed), with its dictionary where there is one. Any
# crash, assertion, leak, timeout or out-of-memory fails the run; the input that caused it is
# left in fuzz/artifacts/<target>/.
#
# SOCKHARNESS_FUZZ_SECONDS (default 45) and SOCKHARNESS_FUZZ_RUNS (default 2000000) bound each
# target; with five targets a cold run takes about eight minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TERM_COLOR=never
seconds=${SOCKHARNESS_FUZZ_SECONDS:-45}
runs=${SOCKHARNESS_FUZZ_RUNS:-2000000}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (not found)"
  if ! timeout 900 cargo install cargo-fuzz --locked; then
    echo "fuzz: cargo-fuzz is missing and could not be installed" >&2
    exit 1
  fi
fi

# libFuzzer needs nightly-only compiler flags (-Zsanitizer, sanitizer coverage). Use a nightly
# toolchain where there is one; otherwise let the stable compiler accept them, which is what
# RUSTC_BOOTSTRAP is for, so that a machine with only stable still fuzzes.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  echo "== fuzzing with $(rustc +nightly --version)"
elif rustc --version | grep -q nightly; then
  fuzz=(cargo fuzz)
  echo "== fuzzing with $(rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  echo "== fuzzing with $(rustc --version), nightly features enabled through RUSTC_BOOTSTRAP=1"
fi

# Sanitizer-instrumented builds in a shared target directory would evict the workspace's own
# artifacts, and cargo-fuzz expects its binaries under fuzz/target: keep them there.
unset CARGO_TARGET_DIR

cd "$root/fuzz"
echo "== cargo fuzz build (address sanitizer, debug assertions)"
"${fuzz[@]}" build

mapfile -t targets < <("${fuzz[@]}" list)
work=$(mktemp -d "${TMPDIR:-/tmp}/sockharness-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  seeds=0
  if [ -d "corpus/$t" ]; then
    cp -r "corpus/$t/." "$corpus/"
    seeds=$(find "corpus/$t" -type f | wc -l)
  fi
  args=(-max_total_time="$seconds" -runs="$runs" -timeout=25 -rss_limit_mb=2048)
  dict=""
  if [ -f "dictionaries/$t.dict" ]; then
    args+=(-dict="$root/fuzz/dictionaries/$t.dict")
    dict=", dictionaries/$t.dict"
  fi
  echo "== $t: ${seconds}s from $seeds seeds$dict"
  log="$work/$t.log"
  # libFuzzer enforces its own limits; the outer timeout only catches a target that never
  # starts fuzzing.
  if timeout $((seconds + 300)) "${fuzz[@]}" run "$t" "$corpus" -- "${args[@]}" >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || tail -n 3 "$log"
  else
    # What went wrong (a panic or a sanitizer report) and, at the end, how to reproduce it.
    grep -m 1 -A 12 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log" || true
    echo "..."
    tail -n 12 "$log"
    echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/" >&2
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a failure"

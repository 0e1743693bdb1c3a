#!/usr/bin/env bash
# Tests, formatting, lints, and the bundled scenario library through the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== cargo test --workspace"
cargo test --workspace

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== benches compile"
cargo bench --workspace --no-run

echo "== sockharness run scenarios"
cargo run --quiet -- run scenarios

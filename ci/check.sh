#!/usr/bin/env bash
# Tests (both capture backends), formatting, lints, benches compiling, and the bundled scenario
# library through the CLI, as root and as an unprivileged user.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== cargo test --workspace"
cargo test --workspace

echo "== cargo test with the libpcap capture backend (same snapshots)"
cargo test -p sockharness -p sockharness-scenarios --features sockharness/libpcap

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings (both backends)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --features sockharness/libpcap -- -D warnings

echo "== the no-I/O crates depend on no I/O library"
# The trees are taken first, so that a failing `cargo tree` fails the check instead of passing it.
for crate in sockharness-script sockharness-wire; do
  tree=$(cargo tree -p "$crate" -e normal --prefix none)
  if grep -E '^(tokio|socket2|libc|mio|nix) ' <<<"$tree"; then
    echo "$crate must not depend on an I/O library" >&2
    exit 1
  fi
done
tree=$(cargo tree -p sockharness -e normal --prefix none)
if grep -E '^(clap|indicatif|quick-junit|anyhow|proptest|rand) ' <<<"$tree"; then
  echo "sockharness must not depend on what only the CLI and the fuzzer use" >&2
  exit 1
fi

echo "== every published crate packages on its own (no file outside its directory)"
# Verification unpacks each crate into cargo's registry sources under its name and version, and
# builds it as a registry crate, which cargo takes to never change: an unpacked copy or a build
# left by an earlier run would be verified instead of this checkout. Neither is kept.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/sockharness-*0.1.0 target/package-check
cargo package --workspace --exclude sockharness-scenarios --exclude sockharness-benches --allow-dirty \
  --target-dir target/package-check
rm -rf target/package-check

echo "== cargo install of the CLI crate: its \`sockharness run\` runs the embedded library"
install_root=$(mktemp -d)
trap 'rm -rf "$install_root"' EXIT
cargo install --quiet --locked --path crates/cli --root "$install_root"
(cd "$install_root" && bin/sockharness run >/dev/null)

echo "== benches compile"
cargo bench --workspace --no-run

echo "== sockharness run scenarios (scenarios/external runs against the installed nginx and redis)"
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/sockharness
"$bin" run scenarios
external=$("$bin" run --format json scenarios/external)
if grep -q '"status": "skipped"' <<<"$external"; then
  echo "scenarios/external was skipped: nginx or redis-server is missing" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  echo "== sockharness run scenarios, as an unprivileged user (isolation through a user namespace)"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$bin" run --isolate always scenarios
fi

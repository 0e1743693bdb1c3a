#!/usr/bin/env bash
# The README's test command as an ordinary user, as most users run it: a user of its own, a
# clean clone of the checkout's HEAD that it owns, and a copy of the toolchain it can read (root's
# is under /root, which others cannot enter). Isolation then goes through a user namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
if [ "$(id -u)" -ne 0 ]; then
  echo "== cargo test --workspace (already an ordinary user)"
  exec cargo test --workspace
fi
user=sockharness-ci
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
home=$(getent passwd "$user" | cut -d: -f6)
work=$(mktemp -d /tmp/sockharness-unprivileged.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== copying the toolchain and the crate cache for $user"
cp -a "$(rustc --print sysroot)" "$work/toolchain"
mkdir -p "$work/cargo-home"
# The crates already downloaded, so the build needs no network; anything missing is fetched.
cp -a "${CARGO_HOME:-$HOME/.cargo}/registry" "$work/cargo-home/" 2>/dev/null || true
git clone --quiet --no-hardlinks "$PWD" "$work/src"
chown -R "$user:" "$work"
chmod 755 "$work"

echo "== cargo test --workspace, as $user (uid $(id -u "$user"))"
setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
  env -i HOME="$home" USER="$user" PATH="$work/toolchain/bin:/usr/bin:/bin" \
  CARGO_HOME="$work/cargo-home" RUSTUP_TOOLCHAIN= CARGO_TERM_COLOR=never \
  sh -c "cd '$work/src' && cargo test --workspace"

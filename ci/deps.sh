#!/usr/bin/env bash
# System packages CI needs beyond Rust: libpcap-dev for the `libpcap` feature, tshark and tcpdump
# for the capture cross-checks, nginx and redis for scenarios/external, afl++ for coverage-guided
# fuzzing. Installs only what is missing, and only as root.
set -euo pipefail
need=()
command -v tshark >/dev/null || need+=(tshark)
command -v tcpdump >/dev/null || need+=(tcpdump)
[ -e /usr/include/pcap.h ] || need+=(libpcap-dev)
# The real servers scenarios/external/ runs against.
command -v nginx >/dev/null || need+=(nginx-light)
command -v redis-server >/dev/null || need+=(redis-server)
# AFL++'s compilers, for the coverage-guided fuzzing check (ci/fuzz-coverage.sh).
command -v afl-clang-fast >/dev/null || need+=(afl++)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${need[*]}, and not root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${need[@]}"
# Packages may start their services; the scenarios start their own servers in private namespaces.
service nginx stop >/dev/null 2>&1 || true
service redis-server stop >/dev/null 2>&1 || true

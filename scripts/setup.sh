#!/usr/bin/env bash
# Installs what running respgate needs on a fresh Debian machine: redis-server and
# redis-tools (redis-cli, redis-benchmark), and checks for cargo. Sourced by dev.sh and
# test.sh; what only the tests need is in setup-test.sh.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; } || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
command -v redis-server >/dev/null 2>&1 || { echo "setup: redis-server still missing" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install the Rust toolchain (https://rustup.rs), then rerun." >&2
  exit 1
fi

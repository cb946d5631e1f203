#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against real redis-server processes
# that the tests start themselves on free loopback ports. Missing redis-server is a
# failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-test.sh

# promtool, for tests/alerts.rs (`promtool check rules` / `promtool test rules` on
# deploy/prometheus/): Debian ships it in the `prometheus` package. Only the test command
# needs it, so it is installed here rather than in setup.sh (which dev.sh sources too).
# Missing promtool fails tests/alerts.rs, never skips it.
if ! command -v promtool >/dev/null 2>&1; then
  echo "test: installing prometheus (for promtool)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus
  command -v promtool >/dev/null 2>&1 || { echo "test: promtool still missing" >&2; exit 1; }
fi
# docker-compose (Debian's, 1.29: validates docker/compose.yml without an engine), for
# tests/deploy.rs, which fails without it.
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "test: installing docker-compose" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends docker-compose
  command -v docker-compose >/dev/null 2>&1 || { echo "test: docker-compose still missing" >&2; exit 1; }
fi

# The production build (the Docker image's: no `dev` feature, no devcluster) must
# compile too: nothing else builds it.
cargo check -p respgate --no-default-features --bins
cargo test --all-targets "$@"

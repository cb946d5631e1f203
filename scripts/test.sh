#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against real redis-server processes
# that the tests start themselves on free loopback ports. Missing redis-server is a
# failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --all-targets "$@"

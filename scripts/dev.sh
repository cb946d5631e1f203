#!/usr/bin/env bash
# Runs respgate in front of a throw-away local Redis Cluster (3 masters + 3 replicas on
# loopback) on 127.0.0.1:6380. Ctrl-C stops everything. Extra arguments go to
# `respgate dev` (see `respgate dev --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release
exec ./target/release/respgate dev "$@"

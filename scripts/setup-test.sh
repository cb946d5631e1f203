#!/usr/bin/env bash
# Installs what only the test suite needs (on top of setup.sh, sourced first): redis-py
# for the client-compatibility tests. Sourced by test.sh; dev.sh does not need it.
set -euo pipefail

# redis-py, for the client-compatibility test: Debian's package for Debian's python3.
if ! /usr/bin/python3 -c 'import redis' >/dev/null 2>&1; then
  echo "setup: installing python3-redis" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y python3 python3-redis
fi

# redis-py >= 5 (RESP3, `protocol=3`) for the RESP3 client test: Debian's python3-redis is
# 4.x. Installed with pip into target/pydeps (project-local, nothing system-wide); the
# test puts that directory on PYTHONPATH.
pydeps="$(pwd)/target/pydeps"
if ! PYTHONPATH="$pydeps" /usr/bin/python3 -c 'import sys, redis; sys.exit(int(redis.__version__.split(".")[0]) < 5)' >/dev/null 2>&1; then
  if ! /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
    echo "setup: installing python3-pip" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y python3-pip
  fi
  echo "setup: installing redis-py 5 into target/pydeps" >&2
  rm -rf "$pydeps"
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-input \
    --root-user-action=ignore --target "$pydeps" 'redis>=5,<6'
fi

#!/usr/bin/env bash
# GETs spread over replicas vs. master-only through one respgate: see
# loadtest/compare.sh and loadtest/README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/compare.sh" replica "$@"

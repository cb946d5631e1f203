#!/usr/bin/env bash
# TLS vs. plain through one respgate: see loadtest/compare.sh and loadtest/README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/compare.sh" tls "$@"

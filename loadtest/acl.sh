#!/usr/bin/env bash
# ACL checks (20 prefix rules) vs. an unrestricted user through one respgate: see
# loadtest/compare.sh and loadtest/README.md.
exec "$(dirname "${BASH_SOURCE[0]}")/compare.sh" acl "$@"

#!/usr/bin/env bash
# Idle-connection memory check: starts `respgate dev` under a raised open-files limit,
# then runs loadtest/idle_conns.py against it (N idle client connections, RSS growth per
# connection, PASS/MISS against 16 KiB). See loadtest/README.md.
#
# Usage: loadtest/idle.sh [--strict] [extra idle_conns.py options, e.g. -n 5000]
# Environment: PORT [first free from 6391], SKIP_BUILD [0], READY_TIMEOUT [60],
#   DEV_ARGS [] extra `respgate dev` options, e.g. "--threads 1"
# Exit: 0 done (PASS or MISS), 1 MISS with --strict, 2 something broke.
set -Eeuo pipefail

for arg in "$@"; do
    case $arg in
        -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lt_traps

command -v python3 >/dev/null 2>&1 || lt_die "python3 not found"
lt_need_redis
lt_build

# respgate (and this script's python) need ~10,100 descriptors for 10,000 connections.
# Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as high as the hard limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((NOFILE < 10100)); then
    lt_die "open-files limit is $NOFILE (hard $(ulimit -Hn)); 10,000 connections need ~10,100: raise the hard limit (as root: prlimit --pid $$ --nofile=65536:65536, or ulimit -Hn 65536)"
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$LT_ROOT/loadtest/results/idle-$STAMP"
mkdir -p "$OUT"
if [[ -n ${PORT:-} ]]; then
    lt_port_busy "$PORT" && lt_die "PORT=$PORT is already in use"
else
    PORT=$(lt_free_port 6391)
fi

lt_start_dev "$PORT" "$OUT/respgate.log"
{
    echo "respgate idle-connection check $STAMP"
    echo "host: $(nproc) cores, $(uname -sr)"
    lt_describe
    echo "respgate dev${DEV_ARGS:+ $DEV_ARGS} pid $RG_PID on 127.0.0.1:$PORT, open-files limit $(awk '/^Max open files/ { print $4 }' "/proc/$RG_PID/limits")"
    echo "raw outputs: $OUT"
} | tee "$OUT/summary.txt"

rc=0
lt_run_job "$OUT/idle_conns.out" python3 "$LT_ROOT/loadtest/idle_conns.py" --pid "$RG_PID" "127.0.0.1:$PORT" "$@" || rc=$?
tee -a "$OUT/summary.txt" <"$OUT/idle_conns.out"
lt_stop_dev
exit "$rc"

#!/usr/bin/env bash
# Memory under hostile clients (issue 13, findings 1-3): starts `respgate dev` for a
# throw-away cluster, then the respgate under test in front of it with login required,
# and runs loadtest/rss_clients.py: 100 never-authenticated partial 15 MB AUTHs and a
# 1M-argument request, 3 clients pipelining GETs of a 1 MB value without reading, one
# subscriber not reading 1 MB messages; prints peak RSS per phase, RSS after every
# client closed, and a well-behaved client's p99 latency meanwhile. See loadtest/README.md.
#
# Usage: loadtest/rss.sh [extra rss_clients.py options, e.g. --gets 300 --publishes 200]
# Environment: BIN [target/release/respgate, built unless SKIP_BUILD=1] the binary
#   measured (e.g. BIN=/work/notes/respgate-old-22a4378); PORT [first free from 6392];
#   SKIP_BUILD [0]; READY_TIMEOUT [60]; RUN_TIMEOUT [600 s for the whole client run]
# Exit: 0 done, 2 something broke.
set -Eeuo pipefail

for arg in "$@"; do
    case $arg in
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lt_traps

command -v python3 >/dev/null 2>&1 || lt_die "python3 not found"
lt_need_redis
if [[ -n ${BIN:-} ]]; then
    LT_BIN=$BIN
    [[ -x $LT_BIN ]] || lt_die "BIN=$BIN is not an executable"
else
    lt_build
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$LT_ROOT/loadtest/results/rss-$STAMP"
mkdir -p "$OUT"
DEV_PORT=$(lt_free_port 6392)
lt_start_dev "$DEV_PORT" "$OUT/dev.log"
if [[ -n ${PORT:-} ]]; then
    lt_port_busy "$PORT" && lt_die "PORT=$PORT is already in use"
else
    PORT=$(lt_free_port $((DEV_PORT + 1)))
fi

# The respgate measured: its own process (not the dev one), login required, defaults
# otherwise (the byte budgets at their defaults for a binary that has them).
HASH=$(printf '%s' ops-pw | sha256sum | cut -d' ' -f1)
SEEDS=$(for s in $RG_SEEDS; do printf '"%s", ' "$s"; done)
cat >"$OUT/respgate.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[cluster]
seeds = [${SEEDS%, }]

[auth]
mode = "users"

[[auth.users]]
name = "ops"
rules = "on #$HASH ~* &* +@all"
EOF
"$LT_BIN" --config "$OUT/respgate.toml" 2>"$OUT/respgate.log" &
MEASURED_PID=$!
stop_measured() {
    if lt_alive "$MEASURED_PID"; then
        kill -INT "$MEASURED_PID" 2>/dev/null || true
        for _ in $(seq 100); do lt_alive "$MEASURED_PID" || break; sleep 0.1; done
        lt_alive "$MEASURED_PID" && kill -KILL "$MEASURED_PID" 2>/dev/null || true
    fi
    wait "$MEASURED_PID" 2>/dev/null || true
}
trap 'r=$?; trap - EXIT; [[ -n $LT_JOB_PID ]] && kill -TERM "$LT_JOB_PID" 2>/dev/null; stop_measured; lt_stop_dev; exit "$r"' EXIT
deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
until [[ $(timeout 2 redis-cli -p "$PORT" --user ops --pass ops-pw --no-auth-warning set rss:ready 1 2>/dev/null) == OK ]]; do
    lt_alive "$MEASURED_PID" || { tail -n 20 "$OUT/respgate.log" >&2; lt_die "respgate exited (log: $OUT/respgate.log)"; }
    ((SECONDS < deadline)) || lt_die "respgate not ready after ${READY_TIMEOUT:-60}s"
    sleep 0.2
done

{
    echo "respgate RSS under hostile clients $STAMP"
    echo "host: $(nproc) cores, $(uname -sr)"
    echo "binary: $LT_BIN (built $(date -r "$LT_BIN" '+%F %T'))"
    echo "respgate pid $MEASURED_PID on 127.0.0.1:$PORT, cluster from respgate dev on $DEV_PORT"
    echo "raw outputs: $OUT"
} | tee "$OUT/summary.txt"

rc=0
lt_run_job "$OUT/clients.out" timeout "${RUN_TIMEOUT:-600}" python3 "$LT_ROOT/loadtest/rss_clients.py" \
    --pid "$MEASURED_PID" "127.0.0.1:$PORT" "$@" || rc=$?
tee -a "$OUT/summary.txt" <"$OUT/clients.out"
grep -E "closing|dropping|refusing" "$OUT/respgate.log" | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8 | tee -a "$OUT/summary.txt" || true
stop_measured
lt_stop_dev
[[ $rc == 0 ]] || exit 2

#!/usr/bin/env bash
# respgate-load against respgate and against the cluster directly, in one go.
#
# Builds the release binaries (respgate, respgate-load), starts `respgate dev` (3 masters
# + 3 replicas on loopback, respgate in front), then runs respgate-load with both targets
# interleaved (respgate, direct, respgate, direct, ...) for ROUNDS rounds:
#   set and get, closed loop, CLIENTS clients, at -P 1 and -P 16 (set first, so the
#   gets find their keys), then the shop's mix (loadtest/workloads/shop.toml) open loop
#   at RATE requests per second.
# Each writes JSON, SVG and the printed report into loadtest/results/load-STAMP/.
# See loadtest/README.md, section "respgate-load".
#
# Usage: loadtest/load.sh
# Environment (defaults in brackets):
#   PORT [6390, or the next free one]  ROUNDS [3]  DURATION [5s per run]  CLIENTS [50]
#   RATE [20000 requests/s for the shop mix]  THREADS [1 load thread]
#   SKIP_BUILD [0]  READY_TIMEOUT [60]  DEV_ARGS []  extra `respgate dev` options
#   ONLY []  run only these steps, e.g. ONLY="get-P1 shop-open"
# Exit: 0 done, 2 something broke (a run with failed connections included).
set -Eeuo pipefail
case ${1:-} in
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lt_traps

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CLIENTS=${CLIENTS:-50}
RATE=${RATE:-20000}
THREADS=${THREADS:-1}
for v in ROUNDS CLIENTS RATE THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || lt_die "$v must be a positive integer, got '${!v}'"
done
((ROUNDS <= 20)) || lt_die "ROUNDS is capped at 20"
LOAD_BIN="$LT_ROOT/target/release/respgate-load"

lt_need_redis
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    command -v cargo >/dev/null 2>&1 || lt_die "cargo not found"
    echo "building: cargo build --release -p respgate -p respgate-load" >&2
    (cd "$LT_ROOT" && cargo build --release --quiet -p respgate -p respgate-load) || lt_die "cargo build --release failed"
fi
[[ -x $LOAD_BIN && -x $LT_BIN ]] || lt_die "missing $LOAD_BIN or $LT_BIN (build first, or SKIP_BUILD=0)"

OUT="$LT_ROOT/loadtest/results/load-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{
    echo "respgate-load: $(lt_describe)"
    echo "host $(hostname), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: ROUNDS=$ROUNDS DURATION=$DURATION CLIENTS=$CLIENTS RATE=$RATE THREADS=$THREADS DEV_ARGS='${DEV_ARGS:-}'"
} | tee "$SUMMARY"

if [[ -n ${PORT:-} ]]; then
    lt_start_dev "$PORT" "$OUT/respgate.log"
else
    lt_start_dev "$(lt_free_port 6390)" "$OUT/respgate.log"
fi
MASTER=$(lt_find_master)
NODE_PIDS=$(echo "$RG_CHILDREN" | xargs | tr ' ' ',')
echo "respgate dev on 127.0.0.1:$RG_PORT (pid $RG_PID), cluster seed $MASTER, nodes $NODE_PIDS" | tee -a "$SUMMARY"

COMMON=(--target "respgate=127.0.0.1:$RG_PORT" --target "direct=cluster:$MASTER"
    --pid "respgate=$RG_PID" --clients "$CLIENTS" --rounds "$ROUNDS" --duration "$DURATION"
    --threads "$THREADS" --quiet)
[[ -n $NODE_PIDS ]] && COMMON+=(--pid "nodes=$NODE_PIDS")

step() { # NAME WORKLOAD ARGS...
    local name=$1 workload=$2
    shift 2
    if [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]]; then
        return 0
    fi
    echo "== $name ($(date +%T), load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$SUMMARY"
    lt_run_job "$OUT/$name.txt" "$LOAD_BIN" "${COMMON[@]}" -w "$LT_ROOT/loadtest/workloads/$workload.toml" \
        --json "$OUT/$name.json" --svg "$OUT/$name.svg" --title "$name: $workload, $*" "$@" ||
        { cat "$OUT/$name.txt" >&2; lt_die "respgate-load failed in step $name (see $OUT/$name.txt)"; }
    cat "$OUT/$name.txt" | tee -a "$SUMMARY"
}

step set-P1 set -P 1
step set-P16 set -P 16
step get-P1 get -P 1
step get-P16 get -P 16
step shop-open shop --mode open --rate "$RATE"

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$SUMMARY"
echo "results: $OUT" | tee -a "$SUMMARY"

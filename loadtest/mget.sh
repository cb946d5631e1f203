#!/usr/bin/env bash
# MGET of 10 keys across slots: respgate vs. a client-side split, against a real local
# Redis Cluster.
#
# Starts `respgate dev` (3 masters + 3 replicas on loopback, respgate in front), writes
# the keyspace once through respgate, then runs examples/mget_bench.rs (50 client tasks,
# one MGET of 10 random keys in flight each, closed loop) in each mode, interleaved, for
# ROUNDS rounds:
#   proxy    through respgate, which splits the MGET per slot and merges the replies
#   cluster  straight to the cluster with the redis crate's async cluster client, which
#            splits the MGET per slot itself (the "direct" side of the ratio)
#   split    straight to the cluster, split by hand: one MGET per slot, one pipeline per
#            master, over plain multiplexed connections (a lean client-side split)
# Reports requests/s, p50/p99 latency, the CPU time per MGET of the client, of respgate
# and of the redis-servers (from /proc and getrusage), per round and as medians, plus
# the median ratios proxy/cluster and proxy/split. See loadtest/README.md.
#
# Usage: loadtest/mget.sh
# Environment (defaults in brackets):
#   PORT [6393]  respgate port (the next free one is taken if it is busy and PORT is unset)
#   ROUNDS [3]   DURATION [10] seconds measured per run   WARMUP [1] seconds before that
#   CLIENTS [50]   KEYS [10] per MGET   KEYSPACE [100000]
#   CONNECTIONS []  connections the client tasks share (default: one per task)
#   MODES [proxy cluster split]   THREADS []  tokio worker threads of the client
#   RUN_TIMEOUT [DURATION+WARMUP+60] seconds per run   SKIP_BUILD [0]   READY_TIMEOUT [60]
#   DEV_ARGS []  extra `respgate dev` options, e.g. "--threads 1"
# Exit: 0 done, 2 something broke (a failed or wrong MGET reply counts as broken).
set -Eeuo pipefail

for arg in "$@"; do
    case $arg in
        -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lt_traps

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-10}
KEYSPACE=${KEYSPACE:-100000}
CONNECTIONS=${CONNECTIONS:-}
THREADS=${THREADS:-}
MODES=${MODES:-proxy cluster split}
RUN_TIMEOUT=${RUN_TIMEOUT:-$((DURATION + WARMUP + 60))}
for v in ROUNDS DURATION CLIENTS KEYS KEYSPACE RUN_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || lt_die "$v must be a positive integer, got '${!v}'"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || lt_die "WARMUP must be a whole number of seconds, got '$WARMUP'"
for v in CONNECTIONS THREADS; do
    [[ -z ${!v} || ${!v} =~ ^[1-9][0-9]*$ ]] || lt_die "$v must be empty or a positive integer, got '${!v}'"
done
((ROUNDS <= 20)) || lt_die "ROUNDS is capped at 20"
((DURATION <= 300 && WARMUP <= 60)) || lt_die "DURATION <= 300 and WARMUP <= 60, please"
((CLIENTS <= 1000 && KEYS <= 1000 && KEYSPACE <= 10000000)) || lt_die "CLIENTS <= 1000, KEYS <= 1000, KEYSPACE <= 10M, please"
((KEYS <= KEYSPACE)) || lt_die "KEYS must not exceed KEYSPACE"
read -r -a MODE_LIST <<<"$MODES"
((${#MODE_LIST[@]} > 0)) || lt_die "MODES is empty"
for m in "${MODE_LIST[@]}"; do
    [[ $m == proxy || $m == cluster || $m == split ]] || lt_die "unknown mode '$m' in MODES (proxy, cluster, split)"
done
has_mode() {
    local m
    for m in "${MODE_LIST[@]}"; do [[ $m == "$1" ]] && return 0; done
    return 1
}

lt_need_redis
lt_build
BENCH="$LT_ROOT/target/release/examples/mget_bench"
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    [[ -x $BENCH ]] || lt_die "SKIP_BUILD=1 but $BENCH does not exist"
else
    echo "building: cargo build --release --example mget_bench" >&2
    (cd "$LT_ROOT" && cargo build --release --quiet --example mget_bench) || lt_die "cargo build --release --example mget_bench failed"
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$LT_ROOT/loadtest/results/mget-$STAMP"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
ROWS="$OUT/runs.tsv"   # one line per mget_bench run
printf 'round\tmode\trequests\tsent\trps\tp50_us\tp99_us\tclient_us\trespgate_ticks\trespgate_user\trespgate_sys\trespgate_us\tredis_ticks\tredis_us\n' >"$ROWS"

say() {
    printf '%s\n' "$*" | tee -a "$SUMMARY"
}

if [[ -n ${PORT:-} ]]; then
    lt_port_busy "$PORT" && lt_die "PORT=$PORT is already in use"
else
    PORT=$(lt_free_port 6393)
fi
CLK_TCK=$(getconf CLK_TCK)

say "respgate mget bench $STAMP"
say "host: $(nproc) cores, $(uname -sr); $(redis-server --version 2>/dev/null | head -n 1 | cut -d' ' -f1-3)"
say "$(lt_describe); mget_bench built $(date -r "$BENCH" '+%F %T')"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews every side)"
say "settings: ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CLIENTS=$CLIENTS KEYS=$KEYS KEYSPACE=$KEYSPACE CONNECTIONS='${CONNECTIONS}' THREADS='${THREADS}' MODES='$MODES' PORT=$PORT DEV_ARGS='${DEV_ARGS:-}'"
say "raw outputs: $OUT"

lt_start_dev "$PORT" "$OUT/respgate.log"
SEEDS=$(tr ' ' ',' <<<"$RG_SEEDS")
SEEDS=${SEEDS%,}
say "respgate dev pid $RG_PID on 127.0.0.1:$PORT; cluster nodes $RG_SEEDS"

# Options common to every mget_bench invocation.
COMMON=(--clients "$CLIENTS" --keys "$KEYS" --keyspace "$KEYSPACE")
if [[ -n $CONNECTIONS ]]; then COMMON+=(--connections "$CONNECTIONS"); fi
if [[ -n $THREADS ]]; then COMMON+=(--threads "$THREADS"); fi

# utime+stime of all redis-servers of the dev cluster, in ticks.
redis_ticks() {
    local c total=0
    for c in $RG_CHILDREN; do
        total=$((total + $(lt_cpu_ticks "$c")))
    done
    echo "$total"
}

# Value of KEY in a `RESULT k=v k=v ...` line.
field() {
    awk -v k="$1" '{ for (i = 1; i <= NF; i++) { p = index($i, "="); if (p && substr($i, 1, p - 1) == k) { print substr($i, p + 1); exit } } }' <<<"$2"
}

target_of() {
    if [[ $1 == proxy ]]; then echo "127.0.0.1:$PORT"; else echo "$SEEDS"; fi
}

# Writes the keyspace once, through respgate.
populate_out="$OUT/populate.out"
echo "# $BENCH proxy 127.0.0.1:$PORT ${COMMON[*]} --populate yes --populate-only" >"$populate_out"
rc=0
lt_run_job "$populate_out" timeout "$RUN_TIMEOUT" "$BENCH" proxy "127.0.0.1:$PORT" "${COMMON[@]}" --populate yes --populate-only || rc=$?
((rc == 0)) || { tail -n 20 "$populate_out" >&2; lt_die "writing the keyspace failed with status $rc: $populate_out"; }
say "keyspace: $(grep -m1 'wrote' "$populate_out" | sed 's/^mget_bench: //')"

# run_one ROUND MODE: one mget_bench run; appends to $ROWS.
run_one() {
    local round=$1 mode=$2
    local raw="$OUT/r${round}-${mode}.out"
    local -a cmd=("$BENCH" "$mode" "$(target_of "$mode")" "${COMMON[@]}" --duration "$DURATION" --warmup "$WARMUP" --populate no)
    echo "# ${cmd[*]}" >"$raw"
    local rg_before rg_after rs_before rs_after rc=0
    rg_before=$(lt_cpu_split "$RG_PID")
    rs_before=$(redis_ticks)
    lt_run_job "$raw" timeout "$RUN_TIMEOUT" "${cmd[@]}" || rc=$?
    rg_after=$(lt_cpu_split "$RG_PID")
    rs_after=$(redis_ticks)
    if ((rc == 124)); then lt_die "mget_bench ($mode) took longer than RUN_TIMEOUT=${RUN_TIMEOUT}s: $raw"; fi
    lt_alive "$RG_PID" || lt_die "respgate dev died during the $mode run (log: $OUT/respgate.log)"
    ((rc == 0)) || { tail -n 20 "$raw" >&2; lt_die "mget_bench ($mode) failed with status $rc (errors or wrong values): $raw"; }
    local line
    line=$(grep -m1 '^RESULT ' "$raw") || lt_die "no RESULT line in $raw"
    local requests sent rps p50 p99 client_us errors mismatches
    requests=$(field requests "$line")
    sent=$(field sent "$line")
    rps=$(field rps "$line")
    p50=$(field p50_us "$line")
    p99=$(field p99_us "$line")
    client_us=$(field client_cpu_us_per_req "$line")
    errors=$(field errors "$line")
    mismatches=$(field mismatches "$line")
    [[ -n $requests && -n $sent && -n $rps && -n $p50 && -n $p99 ]] || lt_die "incomplete RESULT line in $raw"
    [[ $errors == 0 && $mismatches == 0 ]] || lt_die "mget_bench ($mode): errors=$errors mismatches=$mismatches: $raw"
    ((sent > 0)) || lt_die "mget_bench ($mode) sent nothing: $raw"
    local utick=$((${rg_after% *} - ${rg_before% *})) stick=$((${rg_after#* } - ${rg_before#* }))
    local rg_ticks=$((utick + stick)) rs_ticks=$((rs_after - rs_before))
    local rg_us rs_us
    rg_us=$(awk -v t="$rg_ticks" -v hz="$CLK_TCK" -v n="$sent" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    rs_us=$(awk -v t="$rs_ticks" -v hz="$CLK_TCK" -v n="$sent" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$requests" "$sent" "$rps" \
        "$p50" "$p99" "$client_us" "$rg_ticks" "$utick" "$stick" "$rg_us" "$rs_ticks" "$rs_us" >>"$ROWS"
    printf '  round %d  %-7s %9.0f MGET/s  p50 %7.0f us  p99 %7.0f us  CPU us/MGET: client %6.2f  respgate %6.2f (user %d, sys %d ticks)  redis %6.2f\n' \
        "$round" "$mode" "$rps" "$p50" "$p99" "$client_us" "$rg_us" "$utick" "$stick" "$rs_us" >&2
}

# Value of column COL for (round, mode) in $ROWS.
cell() {
    awk -F'\t' -v r="$1" -v m="$2" -v c="$3" 'NR > 1 && $1 == r && $2 == m { print $c }' "$ROWS"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.3f\n", a / b }'
}

HEADER=$(printf '  %-8s %10s %9s %9s %11s %12s %9s %9s' mode 'MGET/s' 'p50 us' 'p99 us' 'client us' 'respgate us' 'redis us' 'total us')
row() { # row MODE RPS P50 P99 CLIENT_US RESPGATE_US REDIS_US
    awk -v m="$1" -v r="$2" -v a="$3" -v b="$4" -v c="$5" -v g="$6" -v s="$7" \
        'BEGIN { printf "  %-8s %10.0f %9.0f %9.0f %11.2f %12.2f %9.2f %9.2f", m, r, a, b, c, g, s, c + g + s }'
}

n_modes=${#MODE_LIST[@]}
est=$((ROUNDS * n_modes * (DURATION + WARMUP + 2) + 5))
say "running $ROUNDS round(s) of: ${MODE_LIST[*]} (order rotated each round; roughly ${est}s)"
say "CPU columns: user+system time per MGET sent (warm-up included) of the mget_bench client (getrusage),"
say "of respgate (its own /proc/PID/stat) and of all six redis-servers (/proc/PID/stat); CLK_TCK=$CLK_TCK"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n_modes; i++)); do
        run_one "$r" "${MODE_LIST[$(((i + r - 1) % n_modes))]}"
    done
    say ""
    say "round $r"
    say "$HEADER"
    for m in "${MODE_LIST[@]}"; do
        say "$(row "$m" "$(cell "$r" "$m" 5)" "$(cell "$r" "$m" 6)" "$(cell "$r" "$m" 7)" "$(cell "$r" "$m" 8)" \
            "$(cell "$r" "$m" 12)" "$(cell "$r" "$m" 14)")"
    done
    if has_mode proxy; then
        for d in cluster split; do
            if has_mode "$d"; then say "  ratio proxy/$d MGET/s: $(ratio "$(cell "$r" proxy 5)" "$(cell "$r" "$d" 5)")"; fi
        done
    fi
done

say ""
say "medians over $ROUNDS round(s)"
say "$HEADER"
for m in "${MODE_LIST[@]}"; do
    vals=()
    for c in 5 6 7 8 12 14; do
        vals+=("$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" "$m" "$c"; done | median)")
    done
    say "$(row "$m" "${vals[@]}")"
done
if has_mode proxy; then
    say ""
    for d in cluster split; do
        has_mode "$d" || continue
        per_round=$(for ((r = 1; r <= ROUNDS; r++)); do ratio "$(cell "$r" proxy 5)" "$(cell "$r" "$d" 5)"; done)
        say "median ratio proxy/$d MGET/s: $(median <<<"$per_round")   (per round: $(tr '\n' ' ' <<<"$per_round"))"
    done
fi
say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

lt_stop_dev
exit 0

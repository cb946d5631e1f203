#!/usr/bin/env bash
# respgate throughput and CPU benchmark against a real local Redis Cluster.
#
# Starts `respgate dev` (3 masters + 3 replicas on loopback, respgate in front), then runs
# redis-benchmark (50 clients, SET and GET, random keys over 100k) at -P 1 and -P 16,
# interleaved proxy / direct-to-cluster, for ROUNDS rounds. Reports requests per second,
# the proxy/direct ratio and respgate's own CPU time per request (from /proc/PID/stat),
# then the medians against the targets. See loadtest/README.md.
#
# Usage: loadtest/bench.sh [--strict]
#   --strict   exit 1 when a target is missed (default: report MISS, exit 0)
# Environment (defaults in brackets):
#   PORT [6390]  respgate port (the next free one is taken if it is busy and PORT is unset)
#   ROUNDS [3]   N_P1 [300000]   N_P16 [2000000]   CLIENTS [50]   KEYSPACE [100000]
#   RUN_TIMEOUT [180] seconds per redis-benchmark run   SKIP_BUILD [0]   READY_TIMEOUT [60]
#   DEV_ARGS []  extra `respgate dev` options, e.g. "--threads 1"
# Exit: 0 done (PASS or MISS), 1 MISS with --strict, 2 something broke.
set -Eeuo pipefail

STRICT=0
for arg in "$@"; do
    case $arg in
        --strict) STRICT=1 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lt_traps

ROUNDS=${ROUNDS:-3}
N_P1=${N_P1:-300000}
N_P16=${N_P16:-2000000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
for v in ROUNDS N_P1 N_P16 CLIENTS KEYSPACE RUN_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || lt_die "$v must be a positive integer, got '${!v}'"
done
((ROUNDS <= 20)) || lt_die "ROUNDS is capped at 20"
((N_P1 <= 10000000 && N_P16 <= 50000000)) || lt_die "N_P1 <= 10M and N_P16 <= 50M, please"

# Targets (from the issue's acceptance criteria).
RATIO_P1_MIN=0.80
RATIO_P16_MIN=0.85
CPU_P1_MAX=6
CPU_P16_MAX=1.0

lt_need_redis
lt_build

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$LT_ROOT/loadtest/results/bench-$STAMP"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
ROWS="$OUT/runs.tsv"   # one line per redis-benchmark run
printf 'round\ttarget\tpipeline\tn\tset_rps\tget_rps\tcpu_ticks\tcpu_us_per_req\tuser_ticks\tsys_ticks\twall_ms\tbench_ticks\tredis_ticks\n' >"$ROWS"

say() {
    printf '%s\n' "$*" | tee -a "$SUMMARY"
}

if [[ -n ${PORT:-} ]]; then
    lt_port_busy "$PORT" && lt_die "PORT=$PORT is already in use"
else
    PORT=$(lt_free_port 6390)
fi
CLK_TCK=$(getconf CLK_TCK)

say "respgate bench $STAMP"
say "host: $(nproc) cores, $(uname -sr); $(redis-benchmark --version 2>/dev/null | head -n 1)"
say "$(lt_describe)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews both sides)"
say "settings: ROUNDS=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 CLIENTS=$CLIENTS KEYSPACE=$KEYSPACE PORT=$PORT DEV_ARGS='${DEV_ARGS:-}'"
say "raw outputs: $OUT"

lt_start_dev "$PORT" "$OUT/respgate.log"
MASTER=$(lt_find_master)
say "respgate dev pid $RG_PID on 127.0.0.1:$PORT; cluster nodes $RG_SEEDS; direct runs via master $MASTER"

# Sum of DBSIZE over the masters: a sanity check that proxied SETs reach the cluster.
masters_dbsize() {
    local seed total=0 n
    local masters
    masters=$(timeout 5 redis-cli -h "${MASTER%:*}" -p "${MASTER##*:}" cluster nodes |
        awk '$3 ~ /(^|,)master(,|$)/ && $3 !~ /fail/ { split($2, a, "@"); print a[1] }')
    for seed in $masters; do
        n=$(timeout 5 redis-cli -h "${seed%:*}" -p "${seed##*:}" dbsize) || lt_die "DBSIZE on $seed failed"
        total=$((total + n))
    done
    echo "$total"
}

# run_one ROUND TARGET(proxy|direct) PIPELINE N: one redis-benchmark run; appends to $ROWS.
run_one() {
    local round=$1 target=$2 p=$3 n=$4
    local raw="$OUT/r${round}-${target}-P${p}.csv"
    local -a cmd=(redis-benchmark -c "$CLIENTS" -r "$KEYSPACE" -t "set,get" -n "$n" -P "$p" --csv)
    if [[ $target == proxy ]]; then
        cmd+=(-h 127.0.0.1 -p "$PORT")
    else
        cmd+=(--cluster -h "${MASTER%:*}" -p "${MASTER##*:}")
    fi
    local before="0 0" after="0 0" rc=0
    echo "# ${cmd[*]}" >"$raw"
    # The CPU budget of the run: respgate's, the benchmark's (this script's children)
    # and the six redis-servers' CPU, and the wall time.
    local bench0 redis0 t0
    bench0=$(lt_children_ticks)
    # shellcheck disable=SC2086
    redis0=$(lt_cpu_ticks_sum $RG_CHILDREN)
    before=$(lt_cpu_split "$RG_PID")
    t0=$(date +%s%N)
    lt_run_job "$raw" timeout "$RUN_TIMEOUT" "${cmd[@]}" || rc=$?
    local wall_ms=$((($(date +%s%N) - t0) / 1000000))
    after=$(lt_cpu_split "$RG_PID")
    local bench_ticks redis_ticks
    bench_ticks=$(($(lt_children_ticks) - bench0))
    # shellcheck disable=SC2086
    redis_ticks=$(($(lt_cpu_ticks_sum $RG_CHILDREN) - redis0))
    if ((rc == 124)); then lt_die "redis-benchmark ($target P$p) took longer than RUN_TIMEOUT=${RUN_TIMEOUT}s: $raw"; fi
    ((rc == 0)) || { tail -n 20 "$raw" >&2; lt_die "redis-benchmark ($target P$p) failed with status $rc: $raw"; }
    lt_alive "$RG_PID" || lt_die "respgate dev died during the $target P$p run (log: $OUT/respgate.log)"
    local errors
    errors=$(grep -c -i 'error' "$raw" || true)
    ((errors == 0)) || { grep -i -m 5 'error' "$raw" >&2; lt_die "redis-benchmark ($target P$p) saw $errors error line(s): $raw"; }
    local set_rps get_rps
    set_rps=$(awk -F'"' '$2 == "SET" { v = $4 } END { print v }' "$raw")
    get_rps=$(awk -F'"' '$2 == "GET" { v = $4 } END { print v }' "$raw")
    [[ -n $set_rps && -n $get_rps ]] || lt_die "no SET/GET rps in $raw"
    local utick=$((${after% *} - ${before% *})) stick=$((${after#* } - ${before#* }))
    local ticks=$((utick + stick)) us=""
    if [[ $target == proxy ]]; then
        us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", t / hz * 1e6 / (2 * n) }')
    fi
    if [[ $target == proxy ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$p" "$n" "$set_rps" "$get_rps" \
            "$ticks" "$us" "$utick" "$stick" "$wall_ms" "$bench_ticks" "$redis_ticks" >>"$ROWS"
    else
        printf '%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t%s\t%s\n' "$round" "$target" "$p" "$n" "$set_rps" "$get_rps" \
            "$wall_ms" "$bench_ticks" "$redis_ticks" >>"$ROWS"
    fi
    printf '  round %d  %-6s P%-2d  n=%-8d SET %10.0f rps  GET %10.0f rps%s\n' "$round" "$target" "$p" "$n" \
        "$set_rps" "$get_rps" "$([[ $target == proxy ]] && echo "  respgate CPU ${ticks} ticks (user ${utick}, sys ${stick}) = ${us} us/req")" >&2
}

# Value of column COL for (round, target, pipeline) in $ROWS.
cell() {
    awk -F'\t' -v r="$1" -v t="$2" -v p="$3" -v c="$4" 'NR > 1 && $1 == r && $2 == t && $3 == p { print $c }' "$ROWS"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

est=$(( ROUNDS * (4 * N_P1 / 80000 + 4 * N_P16 / 400000) + 5 ))
echo "running $ROUNDS round(s) of: proxy P1, direct P1, proxy P16, direct P16 (roughly ${est}s)" >&2
dbsize0=$(masters_dbsize)
for ((r = 1; r <= ROUNDS; r++)); do
    run_one "$r" proxy 1 "$N_P1"
    if ((r == 1)); then
        dbsize1=$(masters_dbsize)
        # n SETs over KEYSPACE random keys: at least min(n, KEYSPACE)/4 new keys, surely.
        want=$(( (N_P1 < KEYSPACE ? N_P1 : KEYSPACE) / 4 ))
        ((dbsize1 - dbsize0 >= want)) || lt_die "proxied SETs did not reach the cluster: DBSIZE over masters went $dbsize0 -> $dbsize1"
    fi
    run_one "$r" direct 1 "$N_P1"
    run_one "$r" proxy 16 "$N_P16"
    run_one "$r" direct 16 "$N_P16"

    say ""
    say "round $r"
    say "$(printf '  %-4s %-4s %12s %12s %7s %12s' test P 'proxy rps' 'direct rps' ratio 'CPU us/req')"
    for p in 1 16; do
        col=5
        for t in SET GET; do
            pr=$(cell "$r" proxy "$p" "$col")
            dr=$(cell "$r" direct "$p" "$col")
            us=$(cell "$r" proxy "$p" 8)
            say "$(awk -v t="$t" -v p="$p" -v a="$pr" -v b="$dr" -v u="$us" 'BEGIN { printf "  %-4s P%-3d %12.0f %12.0f %7.3f %12s", t, p, a, b, a / b, u }')"
            col=6
        done
    done
done

# Medians over the rounds.
say ""
say "medians over $ROUNDS round(s) (CPU us/req is respgate's utime+stime per request, SET+GET together)"
say "$(printf '  %-4s %-4s %12s %12s %13s %12s' test P 'proxy rps' 'direct rps' 'median ratio' 'CPU us/req')"
declare -A MED_RATIO MED_CPU
for p in 1 16; do
    MED_CPU[$p]=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" proxy "$p" 8; done | median)
    col=5
    for t in SET GET; do
        mp=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" proxy "$p" "$col"; done | median)
        md=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" direct "$p" "$col"; done | median)
        MED_RATIO[$t$p]=$(for ((r = 1; r <= ROUNDS; r++)); do
            awk -v a="$(cell "$r" proxy "$p" "$col")" -v b="$(cell "$r" direct "$p" "$col")" 'BEGIN { printf "%.3f\n", a / b }'
        done | median)
        say "$(awk -v t="$t" -v p="$p" -v a="$mp" -v b="$md" -v q="${MED_RATIO[$t$p]}" -v u="${MED_CPU[$p]}" \
            'BEGIN { printf "  %-4s P%-3d %12.0f %12.0f %13.3f %12.3f", t, p, a, b, q, u }')"
        col=6
    done
done

# CPU budget: where the machine's time per request went, proxied and direct (medians
# over the rounds, SET+GET runs together). The direct runs keep every core busy, so a
# proxied run can only match them if respgate's CPU plus what the benchmark and the
# servers spend through it fits in the time the direct run took per request.
say ""
say "CPU budget per request in us (medians; machine = $(nproc) cores x wall time; idle = machine - the rest)"
say "$(printf '  %-6s %-4s %9s %9s %9s %9s %9s' run P machine respgate bench redis idle)"
declare -A BUDGET
budget_cell() { # budget_cell ROUND TARGET P -> "machine respgate bench redis idle"
    local n wall bt rt rg
    n=$(cell "$1" "$2" "$3" 4)
    wall=$(cell "$1" "$2" "$3" 11)
    bt=$(cell "$1" "$2" "$3" 12)
    rt=$(cell "$1" "$2" "$3" 13)
    rg=$(cell "$1" "$2" "$3" 7)
    [[ $rg == - ]] && rg=0
    awk -v n="$n" -v w="$wall" -v bt="$bt" -v rt="$rt" -v rg="$rg" -v hz="$CLK_TCK" -v cores="$(nproc)" 'BEGIN {
        per = 1e6 / (2 * n); m = cores * w / 1000 * per
        printf "%.3f %.3f %.3f %.3f %.3f", m, rg / hz * per, bt / hz * per, rt / hz * per, m - (rg + bt + rt) / hz * per }'
}
for p in 1 16; do
    for t in proxy direct; do
        line=""
        for i in 1 2 3 4 5; do
            v=$(for ((r = 1; r <= ROUNDS; r++)); do budget_cell "$r" "$t" "$p" | cut -d' ' -f"$i"; done | median)
            line+="$v "
        done
        BUDGET[$t$p]=$line
        # shellcheck disable=SC2086
        say "$(printf '  %-6s P%-3d %9.3f %9.3f %9.3f %9.3f %9.3f' "$t" "$p" $line)"
    done
done
# The most respgate could spend per request and still reach a target: the direct run's
# machine time per request, stretched by the target ratio, minus what the benchmark and
# the servers spent per proxied request, with no idle time at all.
for p in 1 16; do
    min=$([[ $p == 1 ]] && echo "$RATIO_P1_MIN" || echo "$RATIO_P16_MIN")
    # shellcheck disable=SC2086
    set -- ${BUDGET[direct$p]}
    dm=$1
    # shellcheck disable=SC2086
    set -- ${BUDGET[proxy$p]}
    say "$(awk -v dm="$dm" -v r="$min" -v rg="$2" -v b="$3" -v s="$4" -v p="$p" 'BEGIN {
        printf "  P%-3d ratio %.2f needs respgate <= %.3f us/request with no idle time (it spent %.3f)", p, r, dm / r - b - s, rg }')"
done

# Targets.
say ""
say "targets"
MISSES=0
check() { # check LABEL VALUE OP LIMIT
    local verdict
    verdict=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { ok = (op == ">=") ? (v >= l) : (v <= l); print ok ? "PASS" : "MISS" }')
    [[ $verdict == PASS ]] || MISSES=$((MISSES + 1))
    say "$(awk -v w="$verdict" -v l="$1" -v v="$2" -v op="$3" -v t="$4" 'BEGIN { printf "  %-4s %-28s %8.3f %s %s", w, l, v, op, t }')"
}
check "SET P1  ratio proxy/direct" "${MED_RATIO[SET1]}" ">=" "$RATIO_P1_MIN"
check "GET P1  ratio proxy/direct" "${MED_RATIO[GET1]}" ">=" "$RATIO_P1_MIN"
check "SET P16 ratio proxy/direct" "${MED_RATIO[SET16]}" ">=" "$RATIO_P16_MIN"
check "GET P16 ratio proxy/direct" "${MED_RATIO[GET16]}" ">=" "$RATIO_P16_MIN"
check "CPU P1  us/request" "${MED_CPU[1]}" "<=" "$CPU_P1_MAX"
check "CPU P16 us/request" "${MED_CPU[16]}" "<=" "$CPU_P16_MAX"
say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
if ((MISSES == 0)); then say "all targets met"; else say "$MISSES target(s) missed"; fi

lt_stop_dev
if ((STRICT && MISSES > 0)); then exit 1; fi
exit 0

#!/usr/bin/env bash
# Issue 17's io_uring spike, measured: the cluster directly, today's respgate, the spike
# on epoll (tokio) and the spike on io_uring, interleaved, under redis-benchmark.
#
# Starts `respgate dev` (3 masters + 3 replicas on loopback, respgate in front), then three
# uring-fwd processes in front of the same cluster (--mode epoll; --mode uring with
# one-shot receives; --mode uring --recv multishot, "uring-ms"; each THREADS threads, like
# respgate's default of one worker per core). For ROUNDS rounds,
# for -P 1 and -P 16, runs redis-benchmark (CLIENTS clients, SET and GET, random keys over
# KEYSPACE) against each target, the order rotated each round. Records requests per second,
# the proxy's utime and stime, the six redis-servers' utime and stime, and the
# benchmark's CPU, all from /proc, and prints medians per request.
# Then counts syscalls per request for each proxy on a short run: `perf stat -e
# raw_syscalls:sys_enter -p PID` (low overhead) and `strace -c -f -p PID` (by name).
#
# Usage: spikes/uring-fwd/bench.sh
# Environment (defaults in brackets):
#   ROUNDS [3]  N_P1 [200000]  N_P16 [1000000]  CLIENTS [50]  KEYSPACE [100000]
#   THREADS [2]  SKIP_BUILD [0]  N_SYSCALLS [20000]  TARGETS ["direct respgate epoll uring uring-ms"]
#   RUN_TIMEOUT [180]  PROFILE [0] (1: also a perf profile of each proxy at -P 1)
# Output: spikes/uring-fwd/results/bench-STAMP/{summary.txt,runs.tsv,syscalls.tsv,...}
set -Eeuo pipefail

SPIKE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=loadtest/lib.sh
source "$SPIKE/../../loadtest/lib.sh"

ROUNDS=${ROUNDS:-3}
N_P1=${N_P1:-200000}
N_P16=${N_P16:-1000000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
THREADS=${THREADS:-2}
N_SYSCALLS=${N_SYSCALLS:-20000}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
read -r -a TARGETS <<<"${TARGETS:-direct respgate epoll uring uring-ms}"
SPIKE_BIN="$SPIKE/target/release/uring-fwd"
CLK_TCK=$(getconf CLK_TCK)

FWD_PIDS=()
bench_cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    if [[ -n $LT_JOB_PID ]]; then kill -TERM "$LT_JOB_PID" 2>/dev/null || true; fi
    for p in "${FWD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    lt_stop_dev
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

lt_need_redis
lt_build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$SPIKE" && cargo build --release --quiet) || lt_die "building the spike failed"
fi
[[ -x $SPIKE_BIN ]] || lt_die "$SPIKE_BIN missing"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$SPIKE/results/bench-$STAMP"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
ROWS="$OUT/runs.tsv"
printf 'round\ttarget\tP\tn\tset_rps\tget_rps\tproxy_user\tproxy_sys\tnodes_user\tnodes_sys\tbench_ticks\twall_ms\tloadavg\treq_per_backend_write\treq_per_client_write\treq_per_turn\n' >"$ROWS"
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

PORT=$(lt_free_port 6390)
say "uring-fwd spike bench $STAMP"
say "host: $(nproc) cores, $(uname -sr); $(redis-benchmark --version | head -n 1)"
say "$(lt_describe)"
say "settings: ROUNDS=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 CLIENTS=$CLIENTS KEYSPACE=$KEYSPACE THREADS=$THREADS targets: ${TARGETS[*]}"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
lt_start_dev "$PORT" "$OUT/respgate.log"
MASTER=$(lt_find_master)
EPOLL_PORT=$(lt_free_port $((PORT + 1)))
"$SPIKE_BIN" --stats "$OUT/stats-epoll" --mode epoll --listen "127.0.0.1:$EPOLL_PORT" --seed "$MASTER" --threads "$THREADS" 2>"$OUT/epoll.log" &
FWD_PIDS+=($!)
EPOLL_PID=$!
sleep 0.3
URING_PORT=$(lt_free_port $((EPOLL_PORT + 1)))
"$SPIKE_BIN" --stats "$OUT/stats-uring" --mode uring --listen "127.0.0.1:$URING_PORT" --seed "$MASTER" --threads "$THREADS" 2>"$OUT/uring.log" &
FWD_PIDS+=($!)
URING_PID=$!
sleep 0.3
MS_PORT=$(lt_free_port $((URING_PORT + 1)))
"$SPIKE_BIN" --stats "$OUT/stats-uring-ms" --mode uring --recv multishot --listen "127.0.0.1:$MS_PORT" --seed "$MASTER" --threads "$THREADS" 2>"$OUT/uring-ms.log" &
FWD_PIDS+=($!)
MS_PID=$!
say "respgate dev pid $RG_PID :$PORT (nodes $RG_SEEDS), spike epoll pid $EPOLL_PID :$EPOLL_PORT, uring pid $URING_PID :$URING_PORT, uring-ms (multishot recv) pid $MS_PID :$MS_PORT"

port_of() { case $1 in respgate) echo "$PORT" ;; epoll) echo "$EPOLL_PORT" ;; uring) echo "$URING_PORT" ;; uring-ms) echo "$MS_PORT" ;; esac; }
pid_of() { case $1 in respgate) echo "$RG_PID" ;; epoll) echo "$EPOLL_PID" ;; uring) echo "$URING_PID" ;; uring-ms) echo "$MS_PID" ;; esac; }
PROXIES=(respgate epoll uring uring-ms)

# Each proxy forwards for real: a SET through it is seen by a GET through the others.
for t in "${PROXIES[@]}"; do
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [[ $(timeout 2 redis-cli -p "$(port_of "$t")" ping 2>/dev/null) == PONG ]] && break
        sleep 0.3
    done
    [[ $(timeout 5 redis-cli -p "$(port_of "$t")" set "spike:{$t}" "v-$t") == OK ]] || lt_die "SET through $t failed"
done
for t in "${PROXIES[@]}"; do
    for u in "${PROXIES[@]}"; do
        got=$(timeout 5 redis-cli -p "$(port_of "$t")" get "spike:{$u}")
        [[ $got == "v-$u" ]] || lt_die "GET spike:{$u} through $t gave '$got'"
    done
done
for u in "${PROXIES[@]}"; do timeout 5 redis-cli -p "$PORT" del "spike:{$u}" >/dev/null; done
say "check: SET/GET through each proxy agree"

# The spike's counters (--stats FILE, rewritten every second): "req bwrites cwrites turns".
spike_stats() {
    [[ -f $OUT/stats-$1 ]] || { echo "0 0 0 0"; return; }
    awk '{ print $2, $4, $6, $8 }' "$OUT/stats-$1"
}

nodes_split() { # "utime stime" summed over the redis-servers
    local u=0 s=0 pid us
    for pid in $RG_CHILDREN; do
        us=$(lt_cpu_split "$pid")
        u=$((u + ${us% *}))
        s=$((s + ${us#* }))
    done
    echo "$u $s"
}

run_one() { # run_one ROUND TARGET P N
    local round=$1 target=$2 p=$3 n=$4
    local raw="$OUT/r$round-$target-P$p.csv"
    local -a cmd=(redis-benchmark -c "$CLIENTS" -r "$KEYSPACE" -t set,get -n "$n" -P "$p" --csv)
    if [[ $target == direct ]]; then
        cmd+=(--cluster -h "${MASTER%:*}" -p "${MASTER##*:}")
    else
        cmd+=(-h 127.0.0.1 -p "$(port_of "$target")")
    fi
    echo "# ${cmd[*]}" >"$raw"
    local load p0="0 0" p1="0 0" n0 n1 b0 t0 rc=0 s0 s1 coalesce="-\t-\t-"
    load=$(cut -d' ' -f1 /proc/loadavg)
    s0=$(spike_stats "$target")
    [[ $target != direct ]] && p0=$(lt_cpu_split "$(pid_of "$target")")
    n0=$(nodes_split)
    b0=$(lt_children_ticks)
    t0=$(date +%s%N)
    lt_run_job "$raw" timeout "$RUN_TIMEOUT" "${cmd[@]}" || rc=$?
    local wall=$((($(date +%s%N) - t0) / 1000000))
    [[ $target != direct ]] && p1=$(lt_cpu_split "$(pid_of "$target")")
    n1=$(nodes_split)
    local bt=$(($(lt_children_ticks) - b0))
    ((rc == 0)) || { tail -n 5 "$raw" >&2; lt_die "redis-benchmark against $target P$p failed ($rc)"; }
    ! grep -qi error "$raw" || { grep -i -m 3 error "$raw" >&2; lt_die "errors in $raw"; }
    if [[ $target == epoll || $target == uring* ]]; then
        sleep 1.2 # the counters file is rewritten every second
        s1=$(spike_stats "$target")
        coalesce=$(awk -v a="$s0" -v b="$s1" 'BEGIN { split(a, x, " "); split(b, y, " "); r = y[1] - x[1]
            printf "%.2f\t%.2f\t%.2f", r / (y[2] - x[2] + 1e-9), r / (y[3] - x[3] + 1e-9), r / (y[4] - x[4] + 1e-9) }')
    fi
    local set_rps get_rps
    set_rps=$(awk -F'"' '$2 == "SET" { v = $4 } END { print v }' "$raw")
    get_rps=$(awk -F'"' '$2 == "GET" { v = $4 } END { print v }' "$raw")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%b\n' "$round" "$target" "$p" "$n" "$set_rps" "$get_rps" \
        $((${p1% *} - ${p0% *})) $((${p1#* } - ${p0#* })) $((${n1% *} - ${n0% *})) $((${n1#* } - ${n0#* })) \
        "$bt" "$wall" "$load" "$coalesce" >>"$ROWS"
    printf '  round %d %-8s P%-2d SET %8.0f GET %8.0f rps  load %s\n' "$round" "$target" "$p" "$set_rps" "$get_rps" "$load" >&2
}

ntargets=${#TARGETS[@]}
for ((r = 1; r <= ROUNDS; r++)); do # ROUNDS=0: only the syscall counts (and PROFILE)
    for p in 1 16; do
        n=$([[ $p == 1 ]] && echo "$N_P1" || echo "$N_P16")
        for ((k = 0; k < ntargets; k++)); do
            run_one "$r" "${TARGETS[$(((k + r - 1) % ntargets))]}" "$p" "$n"
        done
    done
done

# Medians per (target, P): rps, and per request (SET+GET, 2n requests) the proxy's user
# and kernel CPU, the nodes' user and kernel CPU, the benchmark's CPU, in microseconds.
say ""
say "medians over $ROUNDS round(s); CPU in us per request (utime/stime from /proc, ticks of 1/$CLK_TCK s)"
say "$(printf '%-9s %-3s %9s %9s %7s %7s %7s %7s %7s %7s %7s %6s %7s %7s %7s' target P SET_rps GET_rps px_usr px_sys px_tot nd_usr nd_sys nd_tot bench load rq/bw rq/cw rq/turn)"
say "(rq/bw, rq/cw, rq/turn: the spike's requests per backend write, per client write, per loop turn)"
awk -F'\t' -v hz="$CLK_TCK" -v targets="${TARGETS[*]}" '
    NR == 1 { next }
    { k = $2 SUBSEP $3; c[k]++; i = c[k]; per = 1e6 / hz / (2 * $4)
      v[k, 1, i] = $5; v[k, 2, i] = $6; v[k, 3, i] = $7 * per; v[k, 4, i] = $8 * per; v[k, 5, i] = ($7 + $8) * per
      v[k, 6, i] = $9 * per; v[k, 7, i] = $10 * per; v[k, 8, i] = ($9 + $10) * per; v[k, 9, i] = $11 * per; v[k, 10, i] = $13
      v[k, 11, i] = $14 + 0; v[k, 12, i] = $15 + 0; v[k, 13, i] = $16 + 0 }
    function med(k, f,   n, i, j, a, t) { n = c[k]; for (i = 1; i <= n; i++) a[i] = v[k, f, i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { split(targets, T, " "); for (pp = 1; pp <= 2; pp++) { p = pp == 1 ? 1 : 16
      for (ti = 1; ti in T; ti++) { k = T[ti] SUBSEP p; if (!(k in c)) continue
        printf "%-9s %-3s %9.0f %9.0f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %6.2f %7.2f %7.2f %7.2f\n", T[ti], p, med(k, 1), med(k, 2),
          med(k, 3), med(k, 4), med(k, 5), med(k, 6), med(k, 7), med(k, 8), med(k, 9), med(k, 10), med(k, 11), med(k, 12), med(k, 13) } } }' "$ROWS" | tee -a "$SUMMARY"

# Syscalls per request: perf's raw_syscalls:sys_enter count over a short run (all the
# proxy's threads), then strace -c -f for the breakdown by name (strace slows the proxy
# a lot; its counts, not its times, are what matter).
ctx_switches() { # voluntary + involuntary context switches over all threads of PID
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { print s + 0 }'
}
SYS="$OUT/syscalls.tsv"
printf 'target\tP\trequests\tperf_syscalls\tper_request\tctx_switches_per_request\n' >"$SYS"
say ""
say "syscalls per request (perf stat -e raw_syscalls:sys_enter -p PID, redis-benchmark -n $N_SYSCALLS -t set,get), and context switches per request (/proc/PID/task/*/status)"
for p in 1 16; do
    for t in "${PROXIES[@]}"; do
        pid=$(pid_of "$t")
        perf stat -e raw_syscalls:sys_enter -p "$pid" -x, -o "$OUT/perf-$t-P$p.txt" &
        perf_pid=$!
        sleep 0.5
        cs0=$(ctx_switches "$pid")
        redis-benchmark -c "$CLIENTS" -r "$KEYSPACE" -t set,get -n "$N_SYSCALLS" -P "$p" -q -p "$(port_of "$t")" >/dev/null 2>&1
        cs1=$(ctx_switches "$pid")
        kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
        count=$(awk -F, '/raw_syscalls/ { print $1 }' "$OUT/perf-$t-P$p.txt")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$p" $((2 * N_SYSCALLS)) "$count" \
            "$(awk -v c="$count" -v n=$((2 * N_SYSCALLS)) 'BEGIN { printf "%.3f", c / n }')" \
            "$(awk -v c=$((cs1 - cs0)) -v n=$((2 * N_SYSCALLS)) 'BEGIN { printf "%.3f", c / n }')" >>"$SYS"
    done
done
column -t "$SYS" | tee -a "$SUMMARY"
if command -v strace >/dev/null; then
    say ""
    say "strace -c -f -p PID, same short runs at -P 1 and -P 16 (top syscalls; calls per request)"
    for p in 1 16; do
        for t in "${PROXIES[@]}"; do
            pid=$(pid_of "$t")
            strace -c -f -p "$pid" -o "$OUT/strace-$t-P$p.txt" 2>/dev/null &
            st_pid=$!
            sleep 1
            redis-benchmark -c "$CLIENTS" -r "$KEYSPACE" -t set,get -n "$N_SYSCALLS" -P "$p" -q -p "$(port_of "$t")" >/dev/null 2>&1
            kill -INT "$st_pid"; wait "$st_pid" 2>/dev/null || true
            say "  $t P$p: $(awk -v n=$((2 * N_SYSCALLS)) '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { printf "%s %.3f  ", $NF, $4 / n }' "$OUT/strace-$t-P$p.txt" | head -c 300)"
        done
    done
fi
# Where the kernel time goes (PROFILE=1): perf record (cpu-clock, all threads) of each
# proxy over a short run at -P 1, the top symbols by self time.
if [[ ${PROFILE:-0} == 1 ]]; then
    say ""
    say "profile: perf record -e cpu-clock -p PID, redis-benchmark -n $N_SYSCALLS -P 1; top symbols (self %)"
    for t in "${PROXIES[@]}"; do
        pid=$(pid_of "$t")
        perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$OUT/perf-$t.data" 2>/dev/null &
        rec_pid=$!
        sleep 0.5
        redis-benchmark -c "$CLIENTS" -r "$KEYSPACE" -t set,get -n "$N_SYSCALLS" -P 1 -q -p "$(port_of "$t")" >/dev/null 2>&1
        kill -INT "$rec_pid"; wait "$rec_pid" 2>/dev/null || true
        perf report -i "$OUT/perf-$t.data" --no-children --sort sym --stdio 2>/dev/null |
            grep -E '^ +[0-9]' | head -n 25 >"$OUT/profile-$t.txt" || true
        say "  $t:"
        sed 's/^/    /' "$OUT/profile-$t.txt" | head -n 12 | tee -a "$SUMMARY" >/dev/null
        sed 's/^/    /' "$OUT/profile-$t.txt" | head -n 12 >&2
    done
fi

say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "raw outputs: $OUT"

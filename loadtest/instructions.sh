#!/usr/bin/env bash
# Instructions per request of two respgate binaries, counted by valgrind (callgrind):
# a figure the machine's noise does not move, where ab.sh's throughput and CPU time on
# a shared 2-core VM move by +-10% from one run to the next (its A/A run shows it).
#
# Starts one `respgate dev` cluster (from B), then for each binary and workload runs the
# proxy under callgrind twice, once serving N_SMALL requests and once N_LARGE (same
# redis-benchmark workload, one client per pipeline depth so batching is the same every
# time), and reports (Ir(N_LARGE) - Ir(N_SMALL)) / (N_LARGE - N_SMALL): the
# instructions one more request costs, start-up and discovery cancelled out. User-space
# instructions only: the syscalls' kernel side is not counted (it is the same syscalls
# for both binaries unless the data path changed).
#
# Usage: loadtest/instructions.sh A_BIN B_BIN
# Environment: N_SMALL [2000] N_LARGE [12000] CLIENTS [4]
# Exit: 0 done, 2 something broke.
set -Eeuo pipefail
A_BIN=${1:?usage: loadtest/instructions.sh A_BIN B_BIN}
B_BIN=${2:?usage: loadtest/instructions.sh A_BIN B_BIN}
[[ -x $A_BIN && -x $B_BIN ]] || { echo "both binaries must exist" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LT_BIN=$B_BIN
PROXY_PID=""
ins_cleanup() {
    local rc=$?
    [[ -n $PROXY_PID ]] && { kill -TERM "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }
    lt_stop_dev
    exit "$rc"
}
trap ins_cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

N_SMALL=${N_SMALL:-2000} N_LARGE=${N_LARGE:-12000} CLIENTS=${CLIENTS:-4}
((N_LARGE > N_SMALL && N_LARGE <= 200000)) || lt_die "need N_SMALL < N_LARGE <= 200000"
lt_need_redis
OUT="$LT_ROOT/loadtest/results/instructions-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
lt_start_dev "$(lt_free_port 6390)" "$OUT/dev.log"
PORT=$(lt_free_port 6580)
seeds=$(printf '"%s",' $RG_SEEDS)
cat >"$OUT/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
worker_threads = 1
[cluster]
seeds = [${seeds%,}]
[auth]
mode = "none"
TOML

# Ir of one proxy run serving `n` requests of workload $1 at pipeline $2.
count() {
    local bin=$1 test=$2 pipe=$3 n=$4 out=$5
    valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
        "$bin" --config "$OUT/proxy.toml" 2>"$out.log" &
    PROXY_PID=$!
    local deadline=$((SECONDS + 120))
    until [[ $(timeout 5 redis-cli -p "$PORT" set instructions:ready 1 2>/dev/null) == OK ]]; do
        lt_alive "$PROXY_PID" || lt_die "proxy under valgrind exited (log: $out.log)"
        ((SECONDS < deadline)) || lt_die "proxy under valgrind not ready (log: $out.log)"
        sleep 0.5
    done
    redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$n" -P "$pipe" -r 100000 -t "$test" -q >/dev/null
    kill -TERM "$PROXY_PID"
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
    # "summary: <Ir>" (or "totals:") in the callgrind output.
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

printf 'binary\tworkload\tpipeline\tinstructions_per_request\n' | tee "$OUT/result.tsv"
for test in get set; do
    for pipe in 1 16; do
        for side in A B; do
            bin=$A_BIN
            [[ $side == B ]] && bin=$B_BIN
            small=$(count "$bin" "$test" "$pipe" "$N_SMALL" "$OUT/$side-$test-$pipe-small.cg")
            large=$(count "$bin" "$test" "$pipe" "$N_LARGE" "$OUT/$side-$test-$pipe-large.cg")
            per=$(( (large - small) / (N_LARGE - N_SMALL) ))
            printf '%s\t%s\t%s\t%s\n' "$side" "$test" "$pipe" "$per" | tee -a "$OUT/result.tsv"
        done
    done
done
echo "A: $A_BIN"
echo "B: $B_BIN"
echo "results: $OUT/result.tsv"

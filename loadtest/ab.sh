#!/usr/bin/env bash
# A/B benchmark of two respgate binaries in front of one cluster, interleaved.
#
# Starts `respgate dev` from binary B for the cluster (its own proxy stays idle), then
# respgate A and respgate B with the same generated config (auth.mode = "users": an
# unrestricted user `ops` and the restricted `inventory-service` of
# config/production.example.toml; safe guard defaults with admins = ["ops"]). Per
# round and pipeline depth it runs redis-benchmark (CLIENTS clients, SET and GET over
# KEYSPACE random keys, as `ops`) against A then B (B then A on even rounds), then the
# inventory service's lock release as `inventory-service`: `EVAL "return
# redis.call('GET',KEYS[1])" 1 lock:product:<rand>` at -P 1. Reports requests per
# second, B/A ratios and each proxy's CPU per request (from /proc), then medians.
#
# Usage: loadtest/ab.sh A_BIN B_BIN   (e.g. an old main's target/release/respgate and
#        this tree's)
# Environment: ROUNDS [3] N_P1 [200000] N_P16 [1000000] N_EVAL [100000] CLIENTS [50]
#              KEYSPACE [100000] RUN_TIMEOUT [180]
# Exit: 0 done, 2 something broke.
set -Eeuo pipefail
A_BIN=${1:?usage: loadtest/ab.sh A_BIN B_BIN}
B_BIN=${2:?usage: loadtest/ab.sh A_BIN B_BIN}
[[ -x $A_BIN && -x $B_BIN ]] || { echo "both binaries must exist" >&2; exit 2; }

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LT_BIN=$B_BIN
A_PID="" B_PID=""
ab_cleanup() {
    local rc=$?
    local pid
    for pid in $A_PID $B_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        # Only the two proxies: a bare `wait` would also wait for `respgate dev`, which
        # lt_stop_dev stops next.
        wait "$pid" 2>/dev/null || true
    done
    lt_stop_dev
    exit "$rc"
}
trap ab_cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

ROUNDS=${ROUNDS:-3} N_P1=${N_P1:-200000} N_P16=${N_P16:-1000000} N_EVAL=${N_EVAL:-100000}
CLIENTS=${CLIENTS:-50} KEYSPACE=${KEYSPACE:-100000} RUN_TIMEOUT=${RUN_TIMEOUT:-180}
((ROUNDS <= 20)) || lt_die "ROUNDS is capped at 20"
lt_need_redis
CLK_TCK=$(getconf CLK_TCK)
OUT="$LT_ROOT/loadtest/results/ab-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ROWS="$OUT/runs.tsv"
printf 'round\tside\tworkload\tpipeline\trps\tcpu_us_per_req\n' >"$ROWS"

lt_start_dev "$(lt_free_port 6390)" "$OUT/dev.log"
hash() { printf '%s\n' "$1" | "$B_BIN" hash-password; }
PA=$(lt_free_port 6480)
PB=$(lt_free_port $((PA + 1)))
seeds=$(printf '"%s",' $RG_SEEDS)
for side in A B; do
    port=$PA
    [[ $side == B ]] && port=$PB
    cat >"$OUT/$side.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[cluster]
seeds = [${seeds%,}]
[auth]
mode = "users"
[[auth.users]]
name = "ops"
rules = "on $(hash ops-pw) ~* &* +@all"
[[auth.users]]
name = "inventory-service"
rules = "on $(hash inv-pw) ~lock:product:* +@read +@write +@scripting +@connection +@transaction -@dangerous"
[guards]
admins = ["ops"]
TOML
done
"$A_BIN" --config "$OUT/A.toml" 2>"$OUT/A.log" &
A_PID=$!
"$B_BIN" --config "$OUT/B.toml" 2>"$OUT/B.log" &
B_PID=$!
for port in $PA $PB; do
    for _ in $(seq 1 100); do
        [[ $(timeout 2 redis-cli -p "$port" --user ops --pass ops-pw --no-auth-warning set ab:ready 1 2>/dev/null) == OK ]] && break
        sleep 0.2
    done
done

run() { # ROUND SIDE WORKLOAD PIPELINE N
    local round=$1 side=$2 work=$3 p=$4 n=$5 pid=$A_PID port=$PA
    [[ $side == B ]] && { pid=$B_PID; port=$PB; }
    local raw="$OUT/r$round-$side-$work-P$p.csv" before after
    local -a cmd=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -r "$KEYSPACE" -n "$n" -P "$p" --csv)
    if [[ $work == setget ]]; then
        cmd+=(--user ops -a ops-pw -t set,get)
    else
        cmd+=(--user inventory-service -a inv-pw EVAL "return redis.call('GET',KEYS[1])" 1 "lock:product:__rand_int__")
    fi
    before=$(lt_cpu_ticks "$pid")
    timeout "$RUN_TIMEOUT" "${cmd[@]}" >"$raw" 2>&1 || lt_die "redis-benchmark failed: $raw"
    after=$(lt_cpu_ticks "$pid")
    if grep -qi error "$raw"; then lt_die "errors in $raw"; fi
    local reqs=$n
    [[ $work == setget ]] && reqs=$((2 * n))
    awk -F'"' -v r="$round" -v s="$side" -v w="$work" -v p="$p" -v t=$((after - before)) -v hz="$CLK_TCK" -v q="$reqs" \
        '$4 ~ /^[0-9.]+$/ { printf "%s\t%s\t%s-%s\t%s\t%s\t%.3f\n", r, s, w, $2, p, $4, t / hz * 1e6 / q }' "$raw" >>"$ROWS"
}

for round in $(seq 1 "$ROUNDS"); do
    order="A B"
    ((round % 2 == 0)) && order="B A"
    for side in $order; do run "$round" "$side" setget 1 "$N_P1"; done
    for side in $order; do run "$round" "$side" setget 16 "$N_P16"; done
    for side in $order; do run "$round" "$side" eval 1 "$N_EVAL"; done
done

{
    echo "A: $A_BIN"
    echo "B: $B_BIN"
    echo "medians over $ROUNDS rounds (cpu: each proxy's user+sys CPU per request, us;"
    echo "for SET and GET, one run's CPU is shared by its SETs and GETs)"
    printf 'workload\tP\tA_rps\tB_rps\tB/A\tA_cpu_us\tB_cpu_us\n'
    awk -F'\t' 'NR > 1 { k = $3 "\t" $4; rps[k, $2] = rps[k, $2] " " $5; cpu[k, $2] = cpu[k, $2] " " $6; keys[k] = 1 }
        function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
        END { for (k in keys) { ra = med(rps[k, "A"]); rb = med(rps[k, "B"]); printf "%s\t%s\t%s\t%.3f\t%s\t%s\n", k, ra, rb, rb / ra, med(cpu[k, "A"]), med(cpu[k, "B"]) } }' "$ROWS" | sort
} | tee "$OUT/summary.txt"

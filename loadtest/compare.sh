#!/usr/bin/env bash
# respgate A/B benchmark in one respgate process: MODE `tls` compares its TLS port with
# its plain port; MODE `acl` compares a user with no restriction (checks skipped) with a
# user limited by 20 key-prefix rules whose last one matches the benchmark's keys (the
# most pattern work per key) and a command rule (`+@all -@dangerous`); MODE `guards`
# compares, with 30 guard rules (the 3 safe defaults, one `allow` rule for user `open`
# naming SET and GET, and 26 rules naming SET and GET for other users), user `open`
# (the first rule naming SET/GET allows it at once) with user `guard30` (walks all 27
# rules naming SET/GET, none matches: the most guard work per request). Commands no
# rule names cost less than either side (one vector lookup). MODE `ttl` measures the
# TTL policy: with `[[ttl]] pattern = "session:*"`, `SET key:<n> v` (`plainkeys`, not
# covered) against `SET session:<n> v` (`ttlkeys`: respgate appends `EXPIRE ... NX`);
# SET only. MODE `replica` compares GETs of keys read from the masters (`master`) with
# GETs of keys under a `prefer_replica` rule (`replica`: `[replica_reads]`, bound
# 1000 ms), after filling both; GET only.
#
# Starts `respgate dev` (3 masters + 3 replicas on loopback) for the cluster, then a second
# respgate in front of it (both listeners, certificates made here with openssl into the
# results directory; users with `auth.mode = "users"`), and runs redis-benchmark
# (50 clients, SET and GET, random keys over 100k) at -P 1 and -P 16, interleaving the
# two sides (`--tls --cacert ...` / `--user ... -a ...`), for ROUNDS rounds. Reports
# requests per second, the B/A ratio and respgate's CPU time per request, then the
# medians. See loadtest/README.md.
#
# Usage: loadtest/compare.sh tls|acl|guards|ttl|replica   (tls.sh, acl.sh, replica.sh call it)
# Environment (defaults in brackets):
#   ROUNDS [3]   N_P1 [200000]   N_P16 [1000000]   CLIENTS [50]   KEYSPACE [100000]
#   RUN_TIMEOUT [180] seconds per redis-benchmark run   SKIP_BUILD [0]   READY_TIMEOUT [60]
#   THREADS [0] respgate worker threads (0: one per core)
# Exit: 0 done, 2 something broke.
set -Eeuo pipefail

MODE=""
for arg in "$@"; do
    case $arg in
        -h | --help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        tls | acl | guards | ttl | replica) MODE=$arg ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done
[[ -n $MODE ]] || { echo "usage: $0 tls|acl|guards|ttl|replica" >&2; exit 2; }
case $MODE in
    tls) A=plain B=tls ;;
    acl) A=open B=acl20 ;;
    guards) A=open B=guard30 ;;
    ttl) A=plainkeys B=ttlkeys ;;
    replica) A=master B=replica ;;
esac
# Modes that run one custom command (not -t set,get) and report it in one row.
case $MODE in
    ttl) SINGLE=SET ;;
    replica) SINGLE=GET ;;
    *) SINGLE="" ;;
esac

# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lt_traps

ROUNDS=${ROUNDS:-3}
N_P1=${N_P1:-200000}
N_P16=${N_P16:-1000000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
THREADS=${THREADS:-0}
for v in ROUNDS N_P1 N_P16 CLIENTS KEYSPACE RUN_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || lt_die "$v must be a positive integer, got '${!v}'"
done
[[ $THREADS =~ ^[0-9]+$ ]] || lt_die "THREADS must be a number, got '$THREADS'"
((ROUNDS <= 20)) || lt_die "ROUNDS is capped at 20"
((N_P1 <= 10000000 && N_P16 <= 50000000)) || lt_die "N_P1 <= 10M and N_P16 <= 50M, please"

lt_need_redis
command -v openssl >/dev/null 2>&1 || lt_die "openssl not found: apt-get install -y openssl"
redis-benchmark --help 2>&1 | grep -q -- '--tls' || lt_die "this redis-benchmark was built without TLS"
lt_build

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="$LT_ROOT/loadtest/results/$MODE-$STAMP"
mkdir -p "$OUT/certs"
SUMMARY="$OUT/summary.txt"
ROWS="$OUT/runs.tsv"
printf 'round\ttarget\tpipeline\tn\tset_rps\tget_rps\tcpu_ticks\tcpu_us_per_req\n' >"$ROWS"
say() {
    printf '%s\n' "$*" | tee -a "$SUMMARY"
}

# The second respgate (plain + TLS listeners); stopped before `respgate dev`.
RG2_PID=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
tls_cleanup() {
    local rc=$?
    if [[ -n $RG2_PID ]]; then
        kill -TERM "$RG2_PID" 2>/dev/null || true
        wait "$RG2_PID" 2>/dev/null || true
        RG2_PID=""
    fi
    (exit "$rc")
    lt_cleanup
}
trap tls_cleanup EXIT

# A CA and a server certificate for 127.0.0.1 (ECDSA P-256), never kept beyond the run.
C=$OUT/certs
{
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=respgate loadtest CA" -keyout "$C/ca.key" -out "$C/ca.pem"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$C/server.key" -out "$C/server.csr"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$C/ext.cnf"
    openssl x509 -req -in "$C/server.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
        -days 2 -extfile "$C/ext.cnf" -out "$C/server.pem"
} >"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; lt_die "making certificates failed"; }

DEV_PORT=$(lt_free_port 6390)
lt_start_dev "$DEV_PORT" "$OUT/respgate-dev.log"
PLAIN=$(lt_free_port $((DEV_PORT + 1)))
TLS=$(lt_free_port $((PLAIN + 1)))
[[ $TLS != "$PLAIN" ]] || lt_die "no second free port"

seeds=""
for s in $RG_SEEDS; do seeds+="\"$s\", "; done
cat >"$OUT/respgate.toml" <<EOF
[server]
listen = "127.0.0.1:$PLAIN"
worker_threads = $THREADS

[cluster]
seeds = [${seeds%, }]

[auth]
EOF
# users_section NAME RULES: `[auth]` users `open` (unrestricted) and NAME with RULES,
# both with password `pw`.
users_section() {
    local hash
    hash=$(echo pw | "$LT_BIN" hash-password)
    cat >>"$OUT/respgate.toml" <<EOF
mode = "users"
max_failures = 0

[[auth.users]]
name = "open"
rules = "on $hash allkeys allchannels +@all"

[[auth.users]]
name = "$1"
rules = "on $hash $2"
EOF
}
if [[ $MODE == acl ]]; then
    RULES=""
    for i in $(seq 1 19); do RULES+="~svc$i:* "; done
    users_section acl20 "$RULES~key:* +@all -@dangerous"
elif [[ $MODE == guards ]]; then
    users_section guard30 "allkeys allchannels +@all"
    cat >>"$OUT/respgate.toml" <<EOF

[guards]
safe_defaults = true
admins = ["ops"]

[[guards.rules]]
name = "open-allowed"
commands = ["set", "get"]
users = ["open"]
action = "allow"
EOF
    for i in $(seq 1 26); do
        if ((i % 2)); then
            printf '\n[[guards.rules]]\nname = "r%d"\ncommands = ["set", "get", "flushall"]\nusers = ["svc%d"]\naction = "limit"\nrate = "1000/s"\n' "$i" "$i"
        else
            printf '\n[[guards.rules]]\nname = "r%d"\ncommands = ["set", "get", "keys"]\nusers = ["svc%d"]\naction = "deny"\n' "$i" "$i"
        fi
    done >>"$OUT/respgate.toml"
elif [[ $MODE == ttl ]]; then
    cat >>"$OUT/respgate.toml" <<EOF
mode = "none"

[[ttl]]
pattern = "session:*"
default_seconds = 86400
mode = "add"
# The request path only: no background sweep while measuring.
sweep_interval_secs = 0
EOF
elif [[ $MODE == replica ]]; then
    cat >>"$OUT/respgate.toml" <<EOF
mode = "none"

[replica_reads]
rules = [{ pattern = "cache:*", policy = "prefer_replica", max_lag_ms = 1000 }]
EOF
else
    echo 'mode = "none"' >>"$OUT/respgate.toml"
fi
cat >>"$OUT/respgate.toml" <<EOF

[tls]
listen = "127.0.0.1:$TLS"
cert = "$C/server.pem"
key = "$C/server.key"

[log]
level = "warn"
EOF
"$LT_BIN" check-config "$OUT/respgate.toml" >/dev/null || lt_die "generated config rejected: $OUT/respgate.toml"
"$LT_BIN" --config "$OUT/respgate.toml" 2>"$OUT/respgate.log" &
RG2_PID=$!
TLS_CLI=(--tls --cacert "$C/ca.pem")
deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
# The arguments redis-benchmark / redis-cli take to reach each side.
side_args() {
    case $1 in
        plain | plainkeys | ttlkeys | master | replica) echo "-p $PLAIN" ;;
        tls) echo "-p $TLS ${TLS_CLI[*]}" ;;
        open | acl20 | guard30) echo "-p $PLAIN --user $1 -a pw" ;;
    esac
}
# shellcheck disable=SC2046
until [[ $(timeout 2 redis-cli --no-auth-warning $(side_args "$A") set key:ready 1 2>/dev/null) == OK ]] &&
    [[ $(timeout 2 redis-cli --no-auth-warning $(side_args "$B") get key:ready 2>/dev/null) == 1 ]]; do
    lt_alive "$RG2_PID" || { tail -n 20 "$OUT/respgate.log" >&2; lt_die "respgate exited during start-up"; }
    ((SECONDS < deadline)) || lt_die "respgate not ready after ${READY_TIMEOUT:-60}s (log: $OUT/respgate.log)"
    sleep 0.2
done
CLK_TCK=$(getconf CLK_TCK)

say "respgate $MODE bench $STAMP ($A vs $B)"
say "host: $(nproc) cores, $(uname -sr); $(redis-benchmark --version 2>/dev/null | head -n 1)"
say "$(lt_describe)"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "settings: ROUNDS=$ROUNDS N_P1=$N_P1 N_P16=$N_P16 CLIENTS=$CLIENTS KEYSPACE=$KEYSPACE THREADS=$THREADS"
say "respgate pid $RG2_PID: plain 127.0.0.1:$PLAIN, TLS 127.0.0.1:$TLS; cluster $RG_SEEDS"
say "raw outputs: $OUT"

# The one custom command of a single-command mode's side.
single_command() {
    case $1 in
        plainkeys) echo "SET key:__rand_int__ xxx" ;;
        ttlkeys) echo "SET session:__rand_int__ xxx" ;;
        master) echo "GET key:__rand_int__" ;;
        replica) echo "GET cache:__rand_int__" ;;
    esac
}

if [[ $MODE == replica ]]; then
    echo "filling key:* and cache:* ($KEYSPACE keys each)" >&2
    redis-benchmark -p "$PLAIN" -c "$CLIENTS" -r "$KEYSPACE" -n "$((KEYSPACE * 3))" -P 16 -q -t set >/dev/null 2>&1 ||
        lt_die "filling key:* failed"
    redis-benchmark -p "$PLAIN" -c "$CLIENTS" -r "$KEYSPACE" -n "$((KEYSPACE * 3))" -P 16 -q SET 'cache:__rand_int__' xxx >/dev/null 2>&1 ||
        lt_die "filling cache:* failed"
    sleep 2 # replicas eligible again after the bulk write (recover_ms)
fi

# run_one ROUND TARGET PIPELINE N
run_one() {
    local round=$1 target=$2 p=$3 n=$4
    local raw="$OUT/r${round}-${target}-P${p}.csv"
    local -a cmd=(redis-benchmark -c "$CLIENTS" -r "$KEYSPACE" -t "set,get" -n "$n" -P "$p" --csv -h 127.0.0.1)
    # shellcheck disable=SC2207
    cmd+=($(side_args "$target"))
    if [[ -n $SINGLE ]]; then
        # A custom command instead of -t set,get.
        local -a custom=()
        local skip=0 w
        for w in "${cmd[@]}"; do
            if ((skip)); then skip=0; continue; fi
            if [[ $w == -t ]]; then skip=1; continue; fi
            custom+=("$w")
        done
        # shellcheck disable=SC2207
        cmd=("${custom[@]}" $(single_command "$target"))
    fi
    local before after rc=0
    before=$(lt_cpu_ticks "$RG2_PID")
    echo "# ${cmd[*]}" >"$raw"
    lt_run_job "$raw" timeout "$RUN_TIMEOUT" "${cmd[@]}" || rc=$?
    after=$(lt_cpu_ticks "$RG2_PID")
    ((rc != 124)) || lt_die "redis-benchmark ($target P$p) took longer than RUN_TIMEOUT=${RUN_TIMEOUT}s: $raw"
    ((rc == 0)) || { tail -n 20 "$raw" >&2; lt_die "redis-benchmark ($target P$p) failed with status $rc: $raw"; }
    lt_alive "$RG2_PID" || lt_die "respgate died during the $target P$p run (log: $OUT/respgate.log)"
    if grep -q -i 'error' "$raw"; then grep -i -m 5 'error' "$raw" >&2; lt_die "redis-benchmark ($target P$p) saw errors: $raw"; fi
    local set_rps get_rps ticks us
    if [[ -n $SINGLE ]]; then
        set_rps=$(awk -F'"' 'NF > 4 && $2 != "test" { v = $4 } END { print v }' "$raw")
        get_rps=$set_rps
    else
        set_rps=$(awk -F'"' '$2 == "SET" { v = $4 } END { print v }' "$raw")
        get_rps=$(awk -F'"' '$2 == "GET" { v = $4 } END { print v }' "$raw")
    fi
    [[ -n $set_rps && -n $get_rps ]] || lt_die "no SET/GET rps in $raw"
    ticks=$((after - before))
    local per=2
    [[ -z $SINGLE ]] || per=1
    us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$n" -v k="$per" 'BEGIN { printf "%.3f", t / hz * 1e6 / (k * n) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$p" "$n" "$set_rps" "$get_rps" "$ticks" "$us" >>"$ROWS"
    if [[ -n $SINGLE ]]; then
        printf '  round %d  %-9s P%-2d  n=%-8d %s %10.0f rps  respgate CPU %s us/req\n' \
            "$round" "$target" "$p" "$n" "$SINGLE" "$set_rps" "$us" >&2
    else
        printf '  round %d  %-5s P%-2d  n=%-8d SET %10.0f rps  GET %10.0f rps  respgate CPU %s us/req\n' \
            "$round" "$target" "$p" "$n" "$set_rps" "$get_rps" "$us" >&2
    fi
}

cell() {
    awk -F'\t' -v r="$1" -v t="$2" -v p="$3" -v c="$4" 'NR > 1 && $1 == r && $2 == t && $3 == p { print $c }' "$ROWS"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "running $ROUNDS round(s) of: $A P1, $B P1, $A P16, $B P16 (B first in even rounds)" >&2
# Even rounds run B first, so a drift in the machine's load does not favour one side.
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then first=$A second=$B; else first=$B second=$A; fi
    run_one "$r" "$first" 1 "$N_P1"
    run_one "$r" "$second" 1 "$N_P1"
    run_one "$r" "$first" 16 "$N_P16"
    run_one "$r" "$second" 16 "$N_P16"
done

say ""
say "medians over $ROUNDS round(s) (CPU us/req: respgate's utime+stime per request)"
say "$(printf '  %-4s %-4s %12s %12s %10s %14s %12s' test P "$A rps" "$B rps" "$B/$A" "$A us/req" "$B us/req")"
for p in 1 16; do
    cpu_plain=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" "$A" "$p" 8; done | median)
    cpu_tls=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" "$B" "$p" 8; done | median)
    col=5
    for t in ${SINGLE:-SET GET}; do
        mp=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" "$A" "$p" "$col"; done | median)
        mt=$(for ((r = 1; r <= ROUNDS; r++)); do cell "$r" "$B" "$p" "$col"; done | median)
        ratio=$(for ((r = 1; r <= ROUNDS; r++)); do
            awk -v a="$(cell "$r" "$B" "$p" "$col")" -v b="$(cell "$r" "$A" "$p" "$col")" 'BEGIN { printf "%.3f\n", a / b }'
        done | median)
        say "$(awk -v t="$t" -v p="$p" -v a="$mp" -v b="$mt" -v q="$ratio" -v u="$cpu_plain" -v w="$cpu_tls" \
            'BEGIN { printf "  %-4s P%-3d %12.0f %12.0f %10.3f %14.3f %12.3f", t, p, a, b, q, u, w }')"
        col=6
    done
done
say ""
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit 0

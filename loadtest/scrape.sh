#!/usr/bin/env bash
# What watching respgate costs its data path: /metrics scraped every second, against no
# scrape, interleaved, on one respgate in front of one cluster.
#
# Starts `respgate dev` for the cluster (its own proxy stays idle) and one respgate with
# `[admin]` on (the recorder installed, the cluster collector every
# COLLECT_SECS seconds, as in production). Per round it runs redis-benchmark (CLIENTS
# clients, SET and GET over KEYSPACE random keys, -P PIPELINE) once with a scraper
# fetching /metrics every second and once without (the order alternates by round), and
# reports requests per second, the with/without ratio and respgate's CPU per request,
# then medians. Independently of the throughput noise it measures what one scrape costs
# respgate in CPU (SCRAPES back-to-back scrapes of the loaded registry, idle data path)
# and prints that cost as a share of the CPU respgate used per second under load.
#
# Usage: loadtest/scrape.sh            (builds target/release/respgate; SKIP_BUILD=1 to
#                                       use the one there)
# Environment: ROUNDS [5] N [1000000] PIPELINE [16] CLIENTS [50] KEYSPACE [100000]
#              SCRAPES [500] COLLECT_SECS [15] RUN_TIMEOUT [180]
# Exit: 0 done, 2 something broke.
set -Eeuo pipefail
# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-5} N=${N:-1000000} PIPELINE=${PIPELINE:-16} CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000} SCRAPES=${SCRAPES:-500} COLLECT_SECS=${COLLECT_SECS:-15}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
((ROUNDS <= 20)) || lt_die "ROUNDS is capped at 20"
((SCRAPES <= 5000)) || lt_die "SCRAPES is capped at 5000"
command -v curl >/dev/null 2>&1 || lt_die "curl not found (apt-get install -y curl)"

P_PID="" SCRAPER_PID=""
scrape_cleanup() {
    local rc=$?
    [[ -n $SCRAPER_PID ]] && { kill "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; }
    [[ -n $P_PID ]] && { kill -TERM "$P_PID" 2>/dev/null || true; wait "$P_PID" 2>/dev/null || true; }
    lt_stop_dev
    exit "$rc"
}
trap scrape_cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

lt_need_redis
lt_build
CLK_TCK=$(getconf CLK_TCK)
OUT="$LT_ROOT/loadtest/results/scrape-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ROWS="$OUT/runs.tsv"
printf 'round\tside\ttest\trps\tcpu_us_per_req\n' >"$ROWS"
lt_describe | tee "$OUT/what.txt"

lt_start_dev "$(lt_free_port 6390)" "$OUT/dev.log"
PORT=$(lt_free_port 6480)
ADMIN=$(lt_free_port 9180)
seeds=$(printf '"%s",' $RG_SEEDS)
cat >"$OUT/respgate.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[cluster]
seeds = [${seeds%,}]
[auth]
mode = "none"
[admin]
listen = "127.0.0.1:$ADMIN"
cluster_metrics_interval_secs = $COLLECT_SECS
TOML
"$LT_BIN" --config "$OUT/respgate.toml" 2>"$OUT/respgate.log" &
P_PID=$!
for _ in $(seq 1 100); do
    [[ $(timeout 2 redis-cli -p "$PORT" set scrape:ready 1 2>/dev/null) == OK ]] &&
        curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/metrics" && break
    lt_alive "$P_PID" || { cat "$OUT/respgate.log" >&2; lt_die "respgate exited"; }
    sleep 0.2
done
METRICS="http://127.0.0.1:$ADMIN/metrics"

scraper() { # fetches /metrics every second until killed
    while :; do
        curl -sf -o /dev/null "$METRICS" || echo "scrape failed" >&2
        sleep 1
    done
}

run() { # ROUND SIDE
    local round=$1 side=$2 raw="$OUT/r$1-$2.csv" before after
    if [[ $side == scraped ]]; then
        scraper 2>>"$OUT/scraper.log" &
        SCRAPER_PID=$!
    fi
    before=$(lt_cpu_ticks "$P_PID")
    timeout "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$PORT" -c "$CLIENTS" -r "$KEYSPACE" \
        -n "$N" -P "$PIPELINE" -t set,get --csv >"$raw" 2>&1 || lt_die "redis-benchmark failed: $raw"
    after=$(lt_cpu_ticks "$P_PID")
    if [[ -n $SCRAPER_PID ]]; then
        kill "$SCRAPER_PID" 2>/dev/null || true
        wait "$SCRAPER_PID" 2>/dev/null || true
        SCRAPER_PID=""
    fi
    if grep -qi error "$raw"; then lt_die "errors in $raw"; fi
    awk -F'"' -v r="$round" -v s="$side" -v t=$((after - before)) -v hz="$CLK_TCK" -v q=$((2 * N)) \
        '$4 ~ /^[0-9.]+$/ { printf "%s\t%s\t%s\t%s\t%.3f\n", r, s, $2, $4, t / hz * 1e6 / q }' "$raw" >>"$ROWS"
    # respgate's CPU per second of this run, for the scrape-cost share below.
    echo "$side $(((after - before))) $(awk -F'"' '$4 ~ /^[0-9.]+$/ { s += 1 / $4 } END { printf "%.3f", s * '"$N"' }' "$raw")" >>"$OUT/cpu-seconds.txt"
}

for round in $(seq 1 "$ROUNDS"); do
    order="plain scraped"
    ((round % 2 == 0)) && order="scraped plain"
    for side in $order; do run "$round" "$side"; done
done

# The cost of one scrape, measured alone: SCRAPES back-to-back on an idle data path
# (the registry holds everything the runs above recorded).
body=$(curl -sf "$METRICS" | wc -c)
series=$(curl -sf "$METRICS" | grep -vc '^#')
before=$(lt_cpu_ticks "$P_PID")
for _ in $(seq 1 "$SCRAPES"); do curl -sf -o /dev/null "$METRICS"; done
after=$(lt_cpu_ticks "$P_PID")
per_scrape_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$SCRAPES" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
# respgate's CPU per wall second under load (median over the plain runs).
load_cpu=$(awk -v hz="$CLK_TCK" '$1 == "plain" { print $2 / hz / $3 }' "$OUT/cpu-seconds.txt" | sort -g |
    awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')

{
    echo "respgate with [admin] (collector every ${COLLECT_SECS}s); redis-benchmark -c $CLIENTS -P $PIPELINE -n $N SET,GET"
    echo "medians over $ROUNDS interleaved rounds (cpu: respgate's user+sys per request, us)"
    printf 'test\tplain_rps\tscraped_rps\tscraped/plain\tplain_cpu_us\tscraped_cpu_us\n'
    awk -F'\t' 'NR > 1 { rps[$3, $2] = rps[$3, $2] " " $4; cpu[$3, $2] = cpu[$3, $2] " " $5; keys[$3] = 1 }
        function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
        END { for (k in keys) { p = med(rps[k, "plain"]); s = med(rps[k, "scraped"]); printf "%s\t%s\t%s\t%.3f\t%s\t%s\n", k, p, s, s / p, med(cpu[k, "plain"]), med(cpu[k, "scraped"]) } }' "$ROWS" | sort
    # The same round's two runs are closest in time: the median of their ratios.
    awk -F'\t' 'NR > 1 { v[$1, $3, $2] = $4; keys[$3] = 1; rounds[$1] = 1 }
        function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
        END { for (k in keys) { s = ""; for (r in rounds) s = s " " v[r, k, "scraped"] / v[r, k, "plain"]; printf "%s: median of per-round scraped/plain %.3f (rounds:%s)\n", k, med(s), s } }' "$ROWS" | sort
    echo "one scrape: ${per_scrape_us} us of respgate CPU ($body bytes, $series series; $SCRAPES scrapes, idle data path)"
    awk -v s="$per_scrape_us" -v l="$load_cpu" 'BEGIN { printf "respgate under load: %.2f CPU-seconds per second; one scrape per second adds %.3f%% to it\n", l, s / 1e6 / l * 100 }'
} | tee "$OUT/summary.txt"

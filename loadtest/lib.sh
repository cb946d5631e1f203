# shellcheck shell=bash
# Shared helpers for loadtest/bench.sh and loadtest/idle.sh. Source it; do not run it.
#
# Starts and stops `respgate dev` (a throw-away 3-master/3-replica cluster of
# redis-server processes plus respgate in front of it), and makes sure nothing is left
# running: the caller sets `trap lt_cleanup EXIT` right after sourcing.

LT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LT_BIN="$LT_ROOT/target/release/respgate"
RG_PID=""          # pid of the `respgate dev` we started (also its redis-servers' parent)
RG_CHILDREN=""     # pids of its redis-server children, recorded once the cluster is up
RG_LOG=""          # its stderr
RG_PORT=""
RG_SEEDS=""        # "host:port host:port ..." from the `cluster nodes` line

lt_die() {
    echo "error: $*" >&2
    exit 2
}

# Installs redis-server/redis-tools when redis-benchmark is missing (Debian/Ubuntu).
lt_need_redis() {
    if ! command -v redis-benchmark >/dev/null 2>&1; then
        echo "redis-benchmark not found: installing redis-server redis-tools" >&2
        command -v apt-get >/dev/null 2>&1 || lt_die "no apt-get: install redis-server and redis-tools (redis-benchmark, redis-cli) by hand"
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        if ! { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server redis-tools; }; then
            lt_die "apt-get install redis-server redis-tools failed"
        fi
    fi
    local c
    for c in redis-server redis-cli redis-benchmark; do
        command -v "$c" >/dev/null 2>&1 || lt_die "$c not found on PATH"
    done
}

# Builds the release binary, unless SKIP_BUILD=1. Cargo waits by itself when another
# build holds the lock ("Blocking waiting for file lock").
lt_build() {
    if [[ ${SKIP_BUILD:-0} == 1 ]]; then
        [[ -x $LT_BIN ]] || lt_die "SKIP_BUILD=1 but $LT_BIN does not exist"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || lt_die "cargo not found: install Rust (rustup) to build respgate"
    echo "building: cargo build --release" >&2
    (cd "$LT_ROOT" && cargo build --release --quiet) || lt_die "cargo build --release failed"
}

# One line naming what is measured: the commit of the tree (+dirty when tracked files
# differ from it) and when the binary was built (it may predate the tree with SKIP_BUILD=1).
lt_describe() {
    local rev dirty=""
    rev=$(git -C "$LT_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
    git -C "$LT_ROOT" diff --quiet HEAD 2>/dev/null || dirty="+dirty"
    echo "respgate tree $rev$dirty, binary built $(date -r "$LT_BIN" '+%F %T' 2>/dev/null || echo '?')"
}

# True when something accepts connections on 127.0.0.1:$1.
lt_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the first free port among $1 .. $1+49.
lt_free_port() {
    local p
    for ((p = $1; p < $1 + 50; p++)); do
        if ! lt_port_busy "$p"; then
            echo "$p"
            return 0
        fi
    done
    lt_die "no free port in $1..$(($1 + 49))"
}

# Process state letter (R, S, Z, ...) or nothing once the process is gone.
lt_state() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    echo "${stat%% *}"
}

# Alive and not a zombie.
lt_alive() {
    local s
    s=$(lt_state "$1")
    [[ -n $s && $s != Z ]]
}

# utime+stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
lt_cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat") || lt_die "process $1 is gone"
    stat=${stat##*) }          # the fields after "(comm) ": state is field 3
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} ))  # fields 14 and 15
}

# "utime stime" of a process, in clock ticks.
lt_cpu_split() {
    local stat
    stat=$(cat "/proc/$1/stat") || lt_die "process $1 is gone"
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo "${12} ${13}"
}

# utime+stime of this script's reaped children (fields 16 and 17 of /proc/$$/stat), in
# clock ticks: read before and after a job, the difference is what the job used.
lt_children_ticks() {
    local stat
    stat=$(cat "/proc/$$/stat") || lt_die "cannot read /proc/$$/stat"
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${14} + ${15} ))
}

# Sum of utime+stime over the given pids, in clock ticks.
lt_cpu_ticks_sum() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(lt_cpu_ticks "$pid")))
    done
    echo "$total"
}

# lt_start_dev PORT LOGFILE: starts `respgate dev` in the background (it inherits this
# shell's RLIMIT_NOFILE) with $DEV_ARGS, waits for PONG and for a routed SET to work, and fills RG_PID,
# RG_SEEDS, RG_CHILDREN. Gives up after READY_TIMEOUT seconds (default 60).
lt_start_dev() {
    RG_PORT=$1
    RG_LOG=$2
    lt_port_busy "$RG_PORT" && lt_die "127.0.0.1:$RG_PORT is already in use"
    # DEV_ARGS: extra `respgate dev` options, e.g. DEV_ARGS="--threads 1".
    # shellcheck disable=SC2086
    "$LT_BIN" dev --listen "127.0.0.1:$RG_PORT" ${DEV_ARGS:-} 2>"$RG_LOG" &
    RG_PID=$!
    local deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
    while :; do
        lt_alive "$RG_PID" || { tail -n 30 "$RG_LOG" >&2; lt_die "respgate dev exited during start-up (log: $RG_LOG)"; }
        if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$RG_PORT" ping 2>/dev/null) == PONG ]] &&
            [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$RG_PORT" set loadtest:ready 1 2>/dev/null) == OK ]]; then
            break
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$RG_LOG" >&2; lt_die "respgate dev not ready after ${READY_TIMEOUT:-60}s (log: $RG_LOG)"; }
        sleep 0.2
    done
    timeout 2 redis-cli -h 127.0.0.1 -p "$RG_PORT" del loadtest:ready >/dev/null 2>&1 || true
    RG_SEEDS=$(sed -n 's/.*respgate dev: cluster nodes //p' "$RG_LOG" | head -n 1)
    [[ -n $RG_SEEDS ]] || lt_die "no 'respgate dev: cluster nodes' line in $RG_LOG"
    RG_CHILDREN=$(pgrep -P "$RG_PID" | tr '\n' ' ' || true)
}

# Prints one current master as host:port, asking the seeds in turn (CLUSTER NODES).
lt_find_master() {
    local seed m
    for seed in $RG_SEEDS; do
        m=$(timeout 5 redis-cli -h "${seed%:*}" -p "${seed##*:}" cluster nodes 2>/dev/null |
            awk '$3 ~ /(^|,)master(,|$)/ && $3 !~ /fail/ { split($2, a, "@"); print a[1]; exit }')
        if [[ -n $m ]]; then
            echo "$m"
            return 0
        fi
    done
    lt_die "no seed of $RG_SEEDS reported a master"
}

# Stops `respgate dev`: SIGINT (it stops its redis-servers and exits), SIGTERM after 15 s,
# SIGKILL after 20 s (the redis-servers then die by PDEATHSIG). Then makes sure none of its
# redis-server children survived, killing them by pid if they did.
lt_stop_dev() {
    [[ -n $RG_PID ]] || return 0
    local pid=$RG_PID i
    RG_PID=""
    [[ -n $RG_CHILDREN ]] || RG_CHILDREN=$(pgrep -P "$pid" | tr '\n' ' ' || true)
    if lt_alive "$pid"; then
        kill -INT "$pid" 2>/dev/null || true
        i=0
        while lt_alive "$pid" && ((i < 200)); do
            if ((i == 150)); then kill -TERM "$pid" 2>/dev/null || true; fi
            sleep 0.1
            i=$((i + 1))
        done
        if lt_alive "$pid"; then
            echo "warning: respgate dev ($pid) ignored SIGINT/SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    local c left=""
    for ((i = 0; i < 50; i++)); do
        left=""
        for c in $RG_CHILDREN; do
            lt_alive "$c" && left+="$c "
        done
        [[ -z $left ]] && break
        sleep 0.1
    done
    if [[ -n $left ]]; then
        echo "warning: redis-server children still alive after respgate exited: $left; killing them" >&2
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
    RG_CHILDREN=""
}

# lt_run_job OUTFILE CMD...: runs CMD in the background, stdout and stderr appended to
# OUTFILE, and waits for it, so that a signal to this script is handled at once (the trap
# kills the job) instead of after CMD finishes.
LT_JOB_PID=""
lt_run_job() {
    local rc=0 out=$1
    shift
    "$@" >>"$out" 2>&1 &
    LT_JOB_PID=$!
    wait "$LT_JOB_PID" || rc=$?
    LT_JOB_PID=""
    return "$rc"
}

lt_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $LT_JOB_PID ]]; then
        kill -TERM "$LT_JOB_PID" 2>/dev/null || true
        wait "$LT_JOB_PID" 2>/dev/null || true
        LT_JOB_PID=""
    fi
    lt_stop_dev
    exit "$rc"
}

lt_traps() {
    trap lt_cleanup EXIT
    trap 'echo "interrupted" >&2; exit 130' INT
    trap 'echo "terminated" >&2; exit 143' TERM
}

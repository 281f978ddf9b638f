#!/usr/bin/env bash
# Echo-throughput comparison of wsd and peer servers on loopback.
#
# Usage: bash loadtest/bench-echo.sh [wsd] [tungstenite] [fastwebsockets]   (default: all three)
#
# Each server is started fresh for every run, pinned with `taskset -c $SERVER_CPU`, and loaded by
# `taskset -c $LOAD_CPU wsd-loadtest echo --server-pid PID --json`. For every repetition, every
# scenario is run against every server in turn (the server order rotates between repetitions), and
# the medians over repetitions are printed as a markdown table.
#   softirq µs/msg: machine-wide softirq time per message (/proc/stat; mostly loopback TCP delivery).
#     It is a breakdown, not an extra cost: with tick-based accounting (no CONFIG_IRQ_TIME_ACCOUNTING,
#     as here) softirq work done inside a process is also in that process's CPU time.
#   other load: non-idle CPU not charged to the server or the load generator, in cores (other
#     processes, e.g. builds); it should be ~0 for clean numbers.
#   Both processes' CPU times are utime+stime from /proc/PID/stat over the measured window only.
#
# Environment overrides:
#   DURATION=10 WARMUP=2 REPS=3       measured seconds, warm-up seconds, repetitions
#   SCENARIOS="100x20 1000x20 100x16384"  CONNECTIONSxPAYLOAD_BYTES, space separated
#   SERVER_CPU=0 LOAD_CPU=1           cores for the server and the load generator
#   SETTLE=1                          seconds of pause after each run
#   MAX_OTHER=0.05 RETRIES=2          a run during which other processes used more than MAX_OTHER
#                                     cores is repeated, up to RETRIES times (the last try is kept)
#   OUT=DIR                           where raw JSON results and server logs go (default: a new /tmp dir)
#   NO_BUILD=1                        skip the cargo builds
set -uo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
SCENARIOS=${SCENARIOS:-"100x20 1000x20 100x16384"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SETTLE=${SETTLE:-1}
MAX_OTHER=${MAX_OTHER:-0.05}
RETRIES=${RETRIES:-2}
NO_BUILD=${NO_BUILD:-0}

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LT_DIR/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/bench-echo.XXXXXX)}
mkdir -p "$OUT"
LOADGEN="$ROOT/target/release/wsd-loadtest"

log() { printf '%s\n' "$*" >&2; }

# --- servers: name -> port, binary, extra environment ---------------------------------------
declare -A PORT=([wsd]=9001 [tungstenite]=9002 [fastwebsockets]=9003)
declare -A BIN=(
    [wsd]="$ROOT/target/release/wsd"
    [tungstenite]="$LT_DIR/peers/tungstenite-echo/target/release/tungstenite-echo"
    [fastwebsockets]="$LT_DIR/peers/fastwebsockets-echo/target/release/fastwebsockets-echo"
)
declare -A ENVS=([wsd]="CLUSTER_WORKERS=1 WSD_APP=echo" [tungstenite]="" [fastwebsockets]="")
declare -A PEER_DIR=([tungstenite]="$LT_DIR/peers/tungstenite-echo" [fastwebsockets]="$LT_DIR/peers/fastwebsockets-echo")

if [ $# -eq 0 ]; then set -- wsd tungstenite fastwebsockets; fi
for s in "$@"; do
    if [ -z "${PORT[$s]:-}" ]; then
        log "unknown server '$s' (known: wsd tungstenite fastwebsockets)"
        exit 2
    fi
done

# --- only ever kill what this script started ----------------------------------------------
STARTED=()
cleanup() {
    local p
    for p in "${STARTED[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${STARTED[@]}"; do
        wait "$p" 2>/dev/null
    done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null || log "warning: could not raise ulimit -n (now $(ulimit -n))"

# --- build ---------------------------------------------------------------------------------
if [ "$NO_BUILD" != 1 ]; then
    log "building wsd-loadtest (release)"
    (cd "$ROOT" && cargo build --release -p wsd-loadtest) || { log "wsd-loadtest build failed"; exit 1; }
    for s in "$@"; do
        [ -n "${PEER_DIR[$s]:-}" ] || continue
        log "building peer $s (release)"
        (cd "${PEER_DIR[$s]}" && cargo build --release) || log "peer $s failed to build"
    done
fi
[ -x "$LOADGEN" ] || { log "missing $LOADGEN"; exit 1; }

SERVERS=()
for s in "$@"; do
    if [ -x "${BIN[$s]}" ]; then
        SERVERS+=("$s")
    else
        log "skipping $s: ${BIN[$s]} does not exist (build it first)"
    fi
done
[ ${#SERVERS[@]} -gt 0 ] || { log "no server to measure"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME -> sets SERVER_PID; returns non-zero if it did not come up within 10 s.
start_server() {
    local name=$1 port=${PORT[$1]} i
    if port_open "$port"; then
        log "port $port is already in use: not starting $name"
        return 1
    fi
    # shellcheck disable=SC2086 # ENVS holds NAME=VALUE words
    env PORT="$port" ${ENVS[$name]} taskset -c "$SERVER_CPU" "${BIN[$name]}" >>"$OUT/server-$name.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    for i in $(seq 100); do
        if port_open "$port"; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$name exited before accepting on port $port (see $OUT/server-$name.log)"
            stop_server "$SERVER_PID"
            return 1
        fi
        sleep 0.1
    done
    log "$name did not accept on port $port within 10 s"
    stop_server "$SERVER_PID"
    return 1
}

forget_pid() {
    local p keep=()
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}

stop_server() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget_pid "$pid"
}

# jnum KEY FILE: a number (or nothing) from the loadtest's one-line JSON.
jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2" | head -n1; }

median() {
    printf '%s\n' "$@" | grep -E '^[-0-9.eE+]+$' | sort -g |
        awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

maxval() {
    printf '%s\n' "$@" | grep -E '^[-0-9.eE+]+$' | sort -g | tail -n1 | grep . || echo n/a
}

fmt() { # fmt PRINTF_FORMAT VALUE
    if [ "$2" = n/a ]; then printf 'n/a'; else printf "$1" "$2"; fi
}

declare -A RATE SCPU LCPU SOFT P99 OTHER OKRUNS ALLRUNS

# run_once SERVER CONNS SIZE JSON ERR -> loadtest exit code (1 if the server did not start)
run_once() {
    local s=$1 conns=$2 size=$3 json=$4 err=$5 pid lpid rc cmd
    start_server "$s" || return 1
    pid=$SERVER_PID
    cmd=(taskset -c "$LOAD_CPU" "$LOADGEN" echo --url "ws://127.0.0.1:${PORT[$s]}/ws"
        --connections "$conns" --size "$size" --duration "$DURATION" --warmup "$WARMUP"
        --server-pid "$pid" --json)
    log "  ${cmd[*]}"
    # In the background + wait, so a signal interrupts the run at once (the trap then stops both).
    "${cmd[@]}" >"$json" 2>"$err" &
    lpid=$!
    STARTED+=("$lpid")
    wait "$lpid"
    rc=$?
    forget_pid "$lpid"
    stop_server "$pid"
    return $rc
}

# Other processes' CPU during a run, in cores busy on average.
other_load() {
    awk -v o="$(jnum other_cpu_s "$1")" -v m="$(jnum measured_s "$1")" \
        'BEGIN {if (m > 0 && o != "") printf "%.2f", o / m}'
}

log "results in $OUT; servers: ${SERVERS[*]}; scenarios: $SCENARIOS; ${DURATION}s + ${WARMUP}s warm-up, $REPS reps"
n=${#SERVERS[@]}
for rep in $(seq "$REPS"); do
    for scen in $SCENARIOS; do
        conns=${scen%x*}
        size=${scen#*x}
        for k in $(seq 0 $((n - 1))); do
            s=${SERVERS[$(((k + rep - 1) % n))]}
            key="$s|$scen"
            ALLRUNS[$key]=$((${ALLRUNS[$key]:-0} + 1))
            json="$OUT/$s-$scen-rep$rep.json"
            err="$OUT/$s-$scen-rep$rep.err"
            log "rep $rep/$REPS $s $scen"
            for try in $(seq 0 "$RETRIES"); do
                run_once "$s" "$conns" "$size" "$json" "$err"
                rc=$?
                sleep "$SETTLE"
                [ $rc -eq 0 ] || break
                other=$(other_load "$json")
                awk -v o="$other" -v m="$MAX_OTHER" 'BEGIN {exit !(o > m)}' || break
                log "  other processes used $other cores during this run (limit $MAX_OTHER): numbers are not clean"
                [ "$try" -lt "$RETRIES" ] || break
                log "  retrying in 5 s"
                sleep 5
            done
            if [ $rc -ne 0 ]; then
                log "  run failed (exit $rc): $(cat "$json" "$err" 2>/dev/null | head -c 600)"
                continue
            fi
            OKRUNS[$key]=$((${OKRUNS[$key]:-0} + 1))
            RATE[$key]+=" $(jnum msg_per_s "$json")"
            SCPU[$key]+=" $(jnum server_cpu_us_per_msg "$json")"
            LCPU[$key]+=" $(jnum loadgen_cpu_us_per_msg "$json")"
            SOFT[$key]+=" $(jnum softirq_us_per_msg "$json")"
            P99[$key]+=" $(jnum p99 "$json")"
            OTHER[$key]+=" $(other_load "$json")"
            log "  $(jnum msg_per_s "$json") msg/s, server $(jnum server_cpu_us_per_msg "$json") µs/msg, loadgen $(jnum loadgen_cpu_us_per_msg "$json") µs/msg"
        done
    done
done

label() { # 100x16384 -> "100 conns × 16 KiB"
    local c=${1%x*} b=${1#*x}
    if [ "$b" -ge 1024 ] && [ $((b % 1024)) -eq 0 ]; then b="$((b / 1024)) KiB"; else b="$b B"; fi
    printf '%s conns × %s' "$c" "$b"
}

{
    echo "Echo throughput, medians of $REPS run(s) of ${DURATION} s after ${WARMUP} s warm-up;" \
        "server on core $SERVER_CPU, wsd-loadtest on core $LOAD_CPU; $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "| scenario | server | msg/s | server CPU µs/msg | loadgen CPU µs/msg | softirq µs/msg | p99 µs | other load (cores, max) | ok runs |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for scen in $SCENARIOS; do
        for s in "${SERVERS[@]}"; do
            key="$s|$scen"
            # shellcheck disable=SC2086 # word lists
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n' "$(label "$scen")" "$s" \
                "$(fmt '%.0f' "$(median ${RATE[$key]:-})")" \
                "$(fmt '%.2f' "$(median ${SCPU[$key]:-})")" \
                "$(fmt '%.2f' "$(median ${LCPU[$key]:-})")" \
                "$(fmt '%.2f' "$(median ${SOFT[$key]:-})")" \
                "$(fmt '%.0f' "$(median ${P99[$key]:-})")" \
                "$(maxval ${OTHER[$key]:-})" \
                "${OKRUNS[$key]:-0}" "${ALLRUNS[$key]:-0}"
        done
    done
} | tee "$OUT/table.md"

# Fail if any run failed.
for key in "${!ALLRUNS[@]}"; do
    [ "${OKRUNS[$key]:-0}" -eq "${ALLRUNS[$key]}" ] || exit 1
done

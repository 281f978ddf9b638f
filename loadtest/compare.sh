#!/usr/bin/env bash
# Side-by-side comparison of wsd and peer servers on loopback: echo, idle memory, pub/sub fan-out.
#
# Usage: bash loadtest/compare.sh [SERVER...]
#   SERVER: wsd fastwebsockets tungstenite bun node-ws   (default: all five)
#
# Builds wsd, wsd-loadtest and the Rust peers, installs the JavaScript peers (loadtest/peers/install.sh),
# then for every repetition runs every scenario against every server in turn (order rotated each
# repetition), each server started fresh and pinned to $SERVER_CPU, wsd-loadtest pinned to $LOAD_CPU:
#   echo 100x20, echo 1000x20, echo 100x16384   CONNECTIONSxPAYLOAD, ping-pong (one message in flight)
#   connect      $CONNECT_N connections held idle; server RSS delta per connection (/proc/PID/status)
#   fanout       1 publisher -> $FANOUT_SUBS subscribers of one topic, closed loop (window $FANOUT_WINDOW),
#                PROTOCOL.md envelopes: Bun, and wsd once `WSD_APP=pubsub` starts (probed each run)
#   fanout:W     the same with a window of W publications: no more than W are ever unconfirmed, so no
#                send to a subscriber can carry more than W messages (see BENCHMARKS.md, window sweep)
#   fanout:W@R   open loop: R publications per second (the window W still caps the lag), so every
#                server gets the same offered load
# and prints ONE markdown table of medians over the repetitions (also written to $OUT/table.md).
#
# Figures per row:
#   rate           echo: messages/s; connect: connects/s; fanout: deliveries/s
#   srv µs/op      server CPU (utime+stime, /proc/PID/stat) per echoed message / per delivery over the
#                  measured window: the figure that ranks servers on 2 cores; connect: per connection
#                  over the connect phase (10 ms clock ticks: coarse)
#   ratio          srv µs/op divided by wsd's in the same scenario (lower is better)
#   idle KiB/conn  connect rows: (VmRSS after - VmRSS before) / connections held
#   server RSS     the server's VmRSS in MiB before the load generator connected -> at the end of the
#                  measured window (connect: after the idle hold), and in brackets its VmHWM then (peak
#                  since the server started)
#   deliv/srv-CPU-s  fanout rows: deliveries per second of server CPU time
#   load check     "ok (loadgen N%)" when wsd-loadtest used less than LOADGEN_MAX of its core,
#                  "ok (server N%)" when the server was at >= SERVER_BUSY of its core,
#                  otherwise "LOADGEN-BOUND" (the numbers then measure the load generator)
#   other          non-idle CPU charged to neither process, in cores (other work on the machine); runs
#                  above MAX_OTHER are repeated up to RETRIES times and the last try is kept
#
# Environment:
#   QUICK=1                 smoke run: DURATION=2 WARMUP=1 REPS=1 CONNECT_N=2000 (about 3 minutes)
#   DURATION=10 WARMUP=2 REPS=3   measured seconds, warm-up seconds, repetitions (full run: 69 runs,
#                           ~17 minutes without retries; each retry for other load adds ~20 s)
#   SCENARIOS="echo:100x20 echo:1000x20 echo:100x16384 connect fanout fanout:256"
#   CONNECT_N=10000 CONNECT_SETTLE=2 FANOUT_SUBS=1000 FANOUT_WINDOW=32
#   SERVER_CPU=0 LOAD_CPU=1 SETTLE=1 MAX_OTHER=0.05 RETRIES=2 LOADGEN_MAX=0.90 SERVER_BUSY=0.90
#   WSD_BIN=path            use this wsd binary instead of building target/release/wsd
#   WSD_BASE_BIN=path       a second wsd binary (e.g. an older commit's release build), run as the server
#                           named `wsd-base` (port 9006): `compare.sh wsd wsd-base` measures a change
#                           against its base in the same run (not part of the default server list)
#   LOADGEN_IO=epoll        how wsd-loadtest drives its sockets in the echo scenarios (epoll|uring;
#                           measured equal in BENCHMARKS.md)
#   OUT=DIR                 raw JSON, server logs and the table (default: a new /tmp dir)
#   NO_BUILD=1              skip builds and installs
set -uo pipefail

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-2} WARMUP=${WARMUP:-1} REPS=${REPS:-1} CONNECT_N=${CONNECT_N:-2000}
fi
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
SCENARIOS=${SCENARIOS:-"echo:100x20 echo:1000x20 echo:100x16384 connect fanout fanout:256"}
CONNECT_N=${CONNECT_N:-10000}
CONNECT_SETTLE=${CONNECT_SETTLE:-2}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANOUT_WINDOW=${FANOUT_WINDOW:-32}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SETTLE=${SETTLE:-1}
MAX_OTHER=${MAX_OTHER:-0.05}
RETRIES=${RETRIES:-2}
LOADGEN_MAX=${LOADGEN_MAX:-0.90}
SERVER_BUSY=${SERVER_BUSY:-0.90}
NO_BUILD=${NO_BUILD:-0}
LOADGEN_IO=${LOADGEN_IO:-epoll}

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LT_DIR/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/compare.XXXXXX)}
mkdir -p "$OUT"
LOADGEN="$ROOT/target/release/wsd-loadtest"
WSD_BIN=${WSD_BIN:-$ROOT/target/release/wsd}
BUN="$LT_DIR/peers/bun/node_modules/@oven/bun-linux-x64/bin/bun"
ALL_SERVERS="wsd fastwebsockets tungstenite bun node-ws"

log() { printf '%s\n' "$*" >&2; }

declare -A PORT=([wsd]=9001 [tungstenite]=9002 [fastwebsockets]=9003 [bun]=9004 [node-ws]=9005 [wsd-base]=9006)
declare -A PEER_CRATE=([tungstenite]="$LT_DIR/peers/tungstenite-echo" [fastwebsockets]="$LT_DIR/peers/fastwebsockets-echo")

# server_cmd NAME APP -> the command line (an array in CMD) that starts NAME with application APP (echo|pubsub).
server_cmd() {
    case $1 in
        # UPGRADE_MAX_CONCURRENT_PER_IP=0: the load generator opens up to 1,000 connections at once
        # from one address, past the default per-address handshake share (256).
        wsd) CMD=(env "PORT=${PORT[wsd]}" CLUSTER_WORKERS=1 "WSD_APP=$2" UPGRADE_MAX_CONCURRENT_PER_IP=0 "$WSD_BIN") ;;
        wsd-base) CMD=(env "PORT=${PORT[wsd-base]}" CLUSTER_WORKERS=1 "WSD_APP=$2" UPGRADE_MAX_CONCURRENT_PER_IP=0 "$WSD_BASE_BIN") ;;
        tungstenite) CMD=(env "PORT=${PORT[tungstenite]}" "$LT_DIR/peers/tungstenite-echo/target/release/tungstenite-echo") ;;
        fastwebsockets) CMD=(env "PORT=${PORT[fastwebsockets]}" "$LT_DIR/peers/fastwebsockets-echo/target/release/fastwebsockets-echo") ;;
        bun) CMD=(env "PORT=${PORT[bun]}" "APP=$2" "$BUN" "$LT_DIR/peers/bun/server.js") ;;
        node-ws) CMD=(env "PORT=${PORT[node-ws]}" node "$LT_DIR/peers/node-ws/server.js") ;;
    esac
}

# Which servers speak the PROTOCOL.md pub/sub subset (wsd is probed).
declare -A PUBSUB=([bun]=1 [wsd-base]=1)

if [ $# -eq 0 ]; then set -- $ALL_SERVERS; fi
for s in "$@"; do
    [ -n "${PORT[$s]:-}" ] || { log "unknown server '$s' (known: $ALL_SERVERS wsd-base)"; exit 2; }
    if [ "$s" = wsd-base ] && [ ! -x "${WSD_BASE_BIN:-}" ]; then
        log "wsd-base needs WSD_BASE_BIN=path to an executable wsd"; exit 2
    fi
done

# --- only ever stop what this script started ------------------------------------------------
STARTED=()
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null; done
    STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget_pid() {
    local p keep=()
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}

# Both the servers (started from here) and wsd-loadtest inherit this; 10,000 connections need it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || log "warning: could not raise ulimit -n (now $(ulimit -n))"
if [ "$(ulimit -n)" -lt $((CONNECT_N + 100)) ]; then
    log "warning: open-file limit $(ulimit -n) is below CONNECT_N=$CONNECT_N + 100"
fi

# --- build and install -----------------------------------------------------------------------
if [ "$NO_BUILD" != 1 ]; then
    log "building wsd-loadtest (release)"
    (cd "$ROOT" && cargo build --release -p wsd-loadtest) || { log "wsd-loadtest build failed"; exit 1; }
    if [[ " $* " == *" wsd "* ]] && [ "$WSD_BIN" = "$ROOT/target/release/wsd" ]; then
        log "building wsd (release)"
        (cd "$ROOT" && cargo build --release -p wsd) || log "wsd build failed: using the existing binary if any"
    fi
    for s in "$@"; do
        [ -n "${PEER_CRATE[$s]:-}" ] || continue
        log "building peer $s (release)"
        (cd "${PEER_CRATE[$s]}" && cargo build --release) || log "peer $s failed to build"
    done
    js=()
    for s in "$@"; do case $s in bun | node-ws) js+=("$s") ;; esac; done
    if [ ${#js[@]} -gt 0 ]; then bash "$LT_DIR/peers/install.sh" "${js[@]}" || log "JavaScript peer install failed"; fi
fi
[ -x "$LOADGEN" ] || { log "missing $LOADGEN"; exit 1; }

SERVERS=()
for s in "$@"; do
    server_cmd "$s" echo
    exe=${CMD[-1]}
    [ "$s" = node-ws ] && exe=$(command -v node || true)
    [ "$s" = bun ] && exe=$BUN
    if [ -n "$exe" ] && [ -x "$exe" ]; then SERVERS+=("$s"); else log "skipping $s: ${exe:-its binary} is missing"; fi
done
[ ${#SERVERS[@]} -gt 0 ] || { log "no server to measure"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME APP -> SERVER_PID; non-zero if it did not accept connections within 10 s.
start_server() {
    local name=$1 port=${PORT[$1]} i
    if port_open "$port"; then
        log "port $port is already in use: not starting $name"
        return 1
    fi
    server_cmd "$name" "$2"
    taskset -c "$SERVER_CPU" "${CMD[@]}" >>"$OUT/server-$name-$2.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    for i in $(seq 100); do
        if port_open "$port"; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            stop_server "$SERVER_PID"
            return 1
        fi
        sleep 0.1
    done
    log "$name did not accept on port $port within 10 s"
    stop_server "$SERVER_PID"
    return 1
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

# Whether wsd's pub/sub application exists yet: it starts and stays up with WSD_APP=pubsub.
probe_wsd_pubsub() {
    start_server wsd pubsub || return 1
    local pid=$SERVER_PID
    sleep 0.5
    kill -0 "$pid" 2>/dev/null || { stop_server "$pid"; return 1; }
    stop_server "$pid"
    return 0
}

# jnum KEY FILE: the first number for KEY in a one-line JSON result.
jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2" | head -n1; }
# json_p99 FILE: p99 of the first latency object.
json_p99() { sed -n 's/.*"p99":\([-0-9.eE+]*\).*/\1/p' "$1" | head -n1; }

median() {
    printf '%s\n' "$@" | grep -E '^[-0-9.eE+]+$' | sort -g |
        awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}
maxval() { printf '%s\n' "$@" | grep -E '^[-0-9.eE+]+$' | sort -g | tail -n1 | grep . || echo n/a; }
fmt() { if [ "$2" = n/a ] || [ -z "$2" ]; then printf 'n/a'; else printf "$1" "$2"; fi; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.6f", a / b}'; }

# run_loadgen SCENARIO SERVER_PID PORT JSON ERR -> the loadgen's exit status.
run_loadgen() {
    local scen=$1 pid=$2 port=$3 json=$4 err=$5 url lpid rc conns size window rate
    url="ws://127.0.0.1:$port/ws"
    case $scen in
        echo:*)
            conns=${scen#echo:}; size=${conns#*x}; conns=${conns%x*}
            CMD=(echo --url "$url" --connections "$conns" --size "$size" --duration "$DURATION" --warmup "$WARMUP"
                --io "$LOADGEN_IO") ;;
        connect)
            CMD=(connect --url "$url" --connections "$CONNECT_N" --settle "$CONNECT_SETTLE" --timeout 60) ;;
        fanout | fanout:*)
            window=$FANOUT_WINDOW rate=()
            [ "$scen" = fanout ] || window=${scen#fanout:}
            case $window in *@*) rate=(--rate "${window#*@}"); window=${window%@*} ;; esac
            CMD=(fanout --url "$url" --subscribers "$FANOUT_SUBS" --publishers 1 --topics 1 --window "$window" "${rate[@]}"
                --duration "$DURATION" --warmup "$WARMUP" --drain 5) ;;
    esac
    log "  wsd-loadtest ${CMD[*]} --server-pid $pid --json"
    # In the background + wait, so a signal interrupts the run at once (the trap then stops both).
    taskset -c "$LOAD_CPU" "$LOADGEN" "${CMD[@]}" --server-pid "$pid" --json >"$json" 2>"$err" &
    lpid=$!
    STARTED+=("$lpid")
    wait "$lpid"
    rc=$?
    forget_pid "$lpid"
    return $rc
}

# Other processes' CPU during a run, in cores busy on average (echo and fanout results carry it).
other_load() {
    awk -v o="$(jnum other_cpu_s "$1")" -v m="$(jnum measured_s "$1")" \
        'BEGIN {if (m > 0 && o != "") printf "%.2f", o / m}'
}

declare -A RATE OPCPU LGCPU LGUTIL SRVUTIL KIB DPC P99 OTHER OKRUNS ALLRUNS RSS0 RSS1 RSSP

# record KEY SCENARIO JSON: adds one run's figures to the per-row lists.
record() {
    local key=$1 scen=$2 json=$3 m
    case $scen in
        echo:*)
            RATE[$key]+=" $(jnum msg_per_s "$json")"
            OPCPU[$key]+=" $(jnum server_cpu_us_per_msg "$json")"
            LGCPU[$key]+=" $(jnum loadgen_cpu_us_per_msg "$json")"
            P99[$key]+=" $(json_p99 "$json")" ;;
        connect)
            RATE[$key]+=" $(jnum connects_per_s "$json")"
            OPCPU[$key]+=" $(jnum server_cpu_us_per_connect "$json")"
            LGCPU[$key]+=" $(jnum loadgen_cpu_us_per_connect "$json")"
            KIB[$key]+=" $(jnum rss_kib_per_conn "$json")"
            RSS0[$key]+=" $(jnum rss_before_kib "$json")"
            RSS1[$key]+=" $(jnum rss_after_kib "$json")"
            RSSP[$key]+=" $(jnum rss_peak_kib "$json")"
            P99[$key]+=" $(json_p99 "$json")" ;;
        fanout | fanout:*)
            RATE[$key]+=" $(jnum deliveries_per_s "$json")"
            OPCPU[$key]+=" $(jnum server_cpu_us_per_delivery "$json")"
            LGCPU[$key]+=" $(jnum loadgen_cpu_us_per_delivery "$json")"
            DPC[$key]+=" $(jnum deliveries_per_server_cpu_s "$json")"
            P99[$key]+=" $(json_p99 "$json")" ;;
    esac
    if [ "$scen" != connect ]; then
        m=$(jnum measured_s "$json")
        LGUTIL[$key]+=" $(div "$(jnum loadgen_cpu_s "$json")" "$m")"
        SRVUTIL[$key]+=" $(div "$(jnum server_cpu_s "$json")" "$m")"
        OTHER[$key]+=" $(other_load "$json")"
        RSS0[$key]+=" $(jnum server_rss_start_kib "$json")"
        RSS1[$key]+=" $(jnum server_rss_end_kib "$json")"
        RSSP[$key]+=" $(jnum server_rss_peak_kib "$json")"
    fi
}

# rss_cell KEY: "start → end (peak)" in MiB, medians of the runs.
rss_cell() {
    local a b p
    a=$(median ${RSS0[$1]:-}) b=$(median ${RSS1[$1]:-}) p=$(median ${RSSP[$1]:-})
    if [ "$a" = n/a ] || [ "$b" = n/a ]; then printf 'n/a'; return; fi
    awk -v a="$a" -v b="$b" -v p="$p" 'BEGIN {
        printf "%.1f → %.1f", a / 1024, b / 1024
        if (p != "n/a") printf " (%.1f)", p / 1024 }'
}

START_TIME=$(date +%s)
log "results in $OUT; servers: ${SERVERS[*]}; scenarios: $SCENARIOS; ${DURATION}s + ${WARMUP}s warm-up, $REPS reps"
n=${#SERVERS[@]}
for rep in $(seq "$REPS"); do
    for scen in $SCENARIOS; do
        for k in $(seq 0 $((n - 1))); do
            s=${SERVERS[$(((k + rep - 1) % n))]}
            app=echo
            if [ "${scen%%:*}" = fanout ]; then
                app=pubsub
                if [ "$s" = wsd ] && [ -z "${PUBSUB[wsd]:-}" ]; then
                    if probe_wsd_pubsub; then PUBSUB[wsd]=1; else
                        log "rep $rep fanout: wsd does not start with WSD_APP=pubsub yet: skipped"
                        continue
                    fi
                fi
                [ -n "${PUBSUB[$s]:-}" ] || continue
            fi
            key="$s|$scen"
            ALLRUNS[$key]=$((${ALLRUNS[$key]:-0} + 1))
            json="$OUT/$s-${scen/:/-}-rep$rep.json"
            err="$OUT/$s-${scen/:/-}-rep$rep.err"
            log "rep $rep/$REPS $s $scen"
            for try in $(seq 0 "$RETRIES"); do
                if start_server "$s" "$app"; then
                    pid=$SERVER_PID
                    run_loadgen "$scen" "$pid" "${PORT[$s]}" "$json" "$err"
                    rc=$?
                    stop_server "$pid"
                else
                    log "  $s did not start (see $OUT/server-$s-$app.log)"
                    rc=1
                fi
                sleep "$SETTLE"
                [ $rc -eq 0 ] && [ "$scen" != connect ] || break
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
            record "$key" "$scen" "$json"
            log "  rate $(jnum msg_per_s "$json")$(jnum connects_per_s "$json")$(jnum deliveries_per_s "$json")," \
                "server $(jnum server_cpu_us_per_msg "$json")$(jnum server_cpu_us_per_delivery "$json") µs/op," \
                "loadgen $(jnum loadgen_cpu_us_per_msg "$json")$(jnum loadgen_cpu_us_per_delivery "$json") µs/op," \
                "$(jnum rss_kib_per_conn "$json") KiB/conn," \
                "server RSS $(jnum server_rss_start_kib "$json")$(jnum rss_before_kib "$json") ->" \
                "$(jnum server_rss_end_kib "$json")$(jnum rss_after_kib "$json") KiB"
        done
    done
done

label() {
    case $1 in
        echo:*)
            local c=${1#echo:} b
            b=${c#*x}; c=${c%x*}
            if [ "$b" -ge 1024 ] && [ $((b % 1024)) -eq 0 ]; then b="$((b / 1024)) KiB"; else b="$b B"; fi
            printf 'echo %s conns × %s' "$c" "$b" ;;
        connect) printf 'connect %s idle' "$CONNECT_N" ;;
        fanout) printf 'fanout 1 → %s, window %s' "$FANOUT_SUBS" "$FANOUT_WINDOW" ;;
        fanout:*@*)
            local w=${1#fanout:}
            printf 'fanout 1 → %s, window %s, %s publications/s' "$FANOUT_SUBS" "${w%@*}" "${w#*@}" ;;
        fanout:*) printf 'fanout 1 → %s, window %s' "$FANOUT_SUBS" "${1#fanout:}" ;;
    esac
}

# load_check KEY: whether the load generator could have been the limit (medians).
load_check() {
    local lg sv
    lg=$(median ${LGUTIL[$1]:-})
    sv=$(median ${SRVUTIL[$1]:-})
    if [ "$lg" = n/a ]; then printf 'n/a'; return; fi
    if awk -v l="$lg" -v m="$LOADGEN_MAX" 'BEGIN {exit !(l < m)}'; then
        printf 'ok (loadgen %.0f%%, server %.0f%%)' "$(awk -v l="$lg" 'BEGIN {print l * 100}')" "$(awk -v s="$sv" 'BEGIN {print s * 100}')"
    elif awk -v s="$sv" -v b="$SERVER_BUSY" 'BEGIN {exit !(s >= b)}'; then
        printf 'ok (server %.0f%%)' "$(awk -v s="$sv" 'BEGIN {print s * 100}')"
    else
        printf 'LOADGEN-BOUND (loadgen %.0f%%, server %.0f%%)' "$(awk -v l="$lg" 'BEGIN {print l * 100}')" "$(awk -v s="$sv" 'BEGIN {print s * 100}')"
    fi
}

ELAPSED=$(($(date +%s) - START_TIME))
{
    echo "wsd comparison: medians of $REPS run(s), ${DURATION} s measured after ${WARMUP} s warm-up; server on core" \
        "$SERVER_CPU, wsd-loadtest on core $LOAD_CPU; $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ); took ${ELAPSED} s"
    echo
    echo "| scenario | server | rate /s | server CPU µs/op | ratio to wsd | idle KiB/conn | server RSS MiB start → end (peak) | deliveries per server CPU-s | loadgen CPU µs/op | p99 µs | load check | other load (cores, max) | ok runs |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    for scen in $SCENARIOS; do
        base_op=$(median ${OPCPU["wsd|$scen"]:-})
        base_kib=$(median ${KIB["wsd|$scen"]:-})
        for s in "${SERVERS[@]}"; do
            key="$s|$scen"
            [ -n "${ALLRUNS[$key]:-}" ] || continue
            op=$(median ${OPCPU[$key]:-})
            kib=$(median ${KIB[$key]:-})
            if [ "$scen" = connect ]; then ratio=$(div "$kib" "$base_kib"); else ratio=$(div "$op" "$base_op"); fi
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n' "$(label "$scen")" "$s" \
                "$(fmt '%.0f' "$(median ${RATE[$key]:-})")" \
                "$(fmt '%.2f' "$op")" \
                "$(fmt '%.2f' "$ratio")" \
                "$(fmt '%.2f' "$kib")" \
                "$(rss_cell "$key")" \
                "$(fmt '%.0f' "$(median ${DPC[$key]:-})")" \
                "$(fmt '%.2f' "$(median ${LGCPU[$key]:-})")" \
                "$(fmt '%.0f' "$(median ${P99[$key]:-})")" \
                "$( [ "$scen" = connect ] && printf 'n/a' || load_check "$key")" \
                "$(maxval ${OTHER[$key]:-})" \
                "${OKRUNS[$key]:-0}" "${ALLRUNS[$key]:-0}"
        done
    done
    echo
    echo "rate: echo messages/s, connect connects/s, fanout deliveries/s. server CPU µs/op: per echoed message, per"
    echo "delivery or per connect. ratio: server CPU µs/op (connect: idle KiB/conn) over wsd's. load check: ok when wsd-loadtest used"
    echo "under $(awk -v m="$LOADGEN_MAX" 'BEGIN {print m * 100}')% of its core or the server was at ≥ $(awk -v m="$SERVER_BUSY" 'BEGIN {print m * 100}')% of its own."
} | tee "$OUT/table.md"

for key in "${!ALLRUNS[@]}"; do
    [ "${OKRUNS[$key]:-0}" -eq "${ALLRUNS[$key]}" ] || exit 1
done

#!/usr/bin/env bash
# Side-by-side comparison of wsd and peer servers on loopback: echo, idle memory, pub/sub fan-out.
#
# Usage: bash loadtest/compare.sh [SERVER...]
#   SERVER: uws wsd floor-uring floor-epoll fastwebsockets tungstenite bun node-ws   (default: all)
#   uws          uWebSockets (uws-echo / uws-pubsub), built from ../shared/peers/uws by its build.sh into
#                target/peers/uws (once; UWS_REBUILD=1 rebuilds). Without ../shared, compare.sh says so
#                and runs without uWS (and without the lt: rows).
#   floor-uring  the floor: loadtest/peers/floor-echo, wsd's own io_uring driver (same ring setup as a
#                wsd worker) under an application that answers the upgrade and sends every frame back
#                with only its header rewritten (no unmasking, no UTF-8, no worker): the kernel path
#   floor-epoll  the same on wsd's epoll driver
#   wsd-hs256 wsd-es256 wsd-rs256 (not in the default list): wsd with access control on (docs/SECURITY.md): a JWT key
#           (JWT_SECRET, or tests/keys/ec.pub or rsa.pub), ALLOWED_ORIGINS, and RATE_LIMIT,
#           RATE_LIMIT_IDENTITY and UPGRADE_RATE_PER_IP high enough never to refuse; the load generator
#           presents a token of that algorithm (made by tests/auth/tokens.py with PyJWT, in the Python of
#           $WSD_TEST_PYTHON or target/pyenv, which scripts/test creates) in ?token=, whose claims
#           allow its topics through patterns. Compare with `wsd` in the same run for on vs off.
#
# Builds wsd, wsd-loadtest, the floor and the Rust peers, installs the JavaScript peers (loadtest/peers/install.sh),
# then for every repetition runs every scenario against every server in turn (order rotated each
# repetition), each server started fresh and pinned to $SERVER_CPU, the load generator pinned to $LOAD_CPU:
#   echo 100x20, echo 1000x20, echo 100x16384   CONNECTIONSxPAYLOAD, ping-pong (one message in flight)
#   lt:100x20 ...  the same load from uWebSockets' own benchmarks/load_test (a load generator no one on
#                the wsd team wrote; one message in flight per connection), measured between its
#                4-second TICK lines: the first ceil(WARMUP/4) ticks are warm-up, then ceil(DURATION/4)
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
#   ksoftirqd µs/op  CPU of the kernel thread ksoftirqd/$SERVER_CPU (softirq work of the server's core
#                  that the kernel deferred to a thread, e.g. loopback receive processing of the
#                  server's sends, which the server's utime+stime does not include), read from its
#                  /proc/PID/stat before and after the load generator ran and charged per op in the
#                  proportion it bore to the server's own CPU over that same span
#   charged µs/op  srv + ksoftirqd: what the ratios use
#   ÷ uws          charged µs/op over uWebSockets' in the same repetition, median of the repetitions'
#                  ratios [lowest–highest] (connect: idle KiB/conn); without uws, over wsd's
#   ÷ floor        echo and lt rows: charged µs/op over floor-uring's in the same repetition, median
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
#   DURATION=10 WARMUP=2 REPS=3   measured seconds, warm-up seconds, repetitions (each retry for other
#                           load adds ~20 s)
#   ECHO_REPS=2*REPS        repetitions of the echo and lt rows (echo swings ±25% between repetitions on
#                           a VM; the extra repetitions run only those rows)
#   SCENARIOS="echo:100x20 echo:1000x20 echo:100x16384 lt:100x20 lt:1000x20 lt:100x16384 connect fanout fanout:256"
#   SHARED=../shared        where peers/uws/build.sh is (relative to the repository)
#   CONNECT_N=10000 CONNECT_SETTLE=2 FANOUT_SUBS=1000 FANOUT_WINDOW=32
#   SERVER_CPU=0 LOAD_CPU=1 SETTLE=1 MAX_OTHER=0.05 RETRIES=2 LOADGEN_MAX=0.90 SERVER_BUSY=0.90
#   WSD_BIN=path            use this wsd binary instead of building target/release/wsd
#   WSD_BASE_BIN=path       a second wsd binary (e.g. an older commit's release build), run as the server
#                           named `wsd-base` (port 9009): `compare.sh wsd wsd-base` measures a change
#                           against its base in the same run (not part of the default server list)
#   LOADGEN_IO=epoll        how wsd-loadtest drives its sockets in the echo scenarios (epoll|uring;
#                           measured equal in BENCHMARKS.md)
#   OUT=DIR                 raw JSON, server logs and the table (default: a new /tmp dir)
#   NO_BUILD=1              skip builds and installs
#   PORT_OFFSET=0           added to every server's port (9001-9009)
set -uo pipefail

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-2} WARMUP=${WARMUP:-1} REPS=${REPS:-1} CONNECT_N=${CONNECT_N:-2000}
fi
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
ECHO_REPS=${ECHO_REPS:-$((2 * REPS))}
SCENARIOS=${SCENARIOS:-"echo:100x20 echo:1000x20 echo:100x16384 lt:100x20 lt:1000x20 lt:100x16384 connect fanout fanout:256"}
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
FLOOR="$ROOT/target/release/floor-echo"
SHARED=${SHARED:-$ROOT/../shared}
UWS_KIT="$SHARED/peers/uws"
UWS_OUT="$ROOT/target/peers/uws"
ALL_SERVERS="uws wsd floor-uring floor-epoll fastwebsockets tungstenite bun node-ws"

log() { printf '%s\n' "$*" >&2; }

declare -A PORT=([wsd]=9001 [tungstenite]=9002 [fastwebsockets]=9003 [bun]=9004 [node-ws]=9005 [uws]=9006
    [floor-uring]=9007 [floor-epoll]=9008 [wsd-base]=9009 [wsd-hs256]=9010 [wsd-es256]=9011 [wsd-rs256]=9012)
# PORT_OFFSET=N moves every port by N, so two comparisons can run side by side on one machine.
for s in "${!PORT[@]}"; do PORT[$s]=$((PORT[$s] + ${PORT_OFFSET:-0})); done
# Access control for the wsd-* variants: the key each verifies with, and the query carrying a token.
BENCH_SECRET=bench-secret-of-at-least-32-bytes-long
ACCESS_ENV=(UPGRADE_MAX_CONCURRENT_PER_IP=0 ALLOWED_ORIGINS=https://bench.example RATE_LIMIT=1000000/1000000
    RATE_LIMIT_IDENTITY=1000000/1000000 UPGRADE_RATE_PER_IP=1000000/1000000)
declare -A KEY_ENV=([wsd-hs256]="JWT_SECRET=$BENCH_SECRET" [wsd-es256]="JWT_PUBLIC_KEY=$ROOT/tests/keys/ec.pub"
    [wsd-rs256]="JWT_PUBLIC_KEY=$ROOT/tests/keys/rsa.pub")
declare -A QUERY=()
# auth_token ALG KEY -> a token valid for a day for sub "bench", rights by pattern.
auth_token() {
    local py=${WSD_TEST_PYTHON:-$ROOT/target/pyenv/bin/python}
    printf '[{"alg":"%s","key":"%s","claims":{"sub":"bench","subscribe":["news:>","user:{sub}:>","*"],"publish":["news:>","*"]},"exp_in":86400}]' "$1" "$2" |
        (cd "$ROOT" && "$py" tests/auth/tokens.py) | tr -d '[]" \n'
}
declare -A PEER_CRATE=([tungstenite]="$LT_DIR/peers/tungstenite-echo" [fastwebsockets]="$LT_DIR/peers/fastwebsockets-echo")

# server_cmd NAME APP -> the command line (an array in CMD) that starts NAME with application APP
# (echo|pubsub), and its executable in EXE.
server_cmd() {
    case $1 in
        uws) CMD=("$UWS_OUT/uws-$2" "${PORT[uws]}") ;;
        floor-uring) CMD=("$FLOOR" uring "${PORT[floor-uring]}") ;;
        floor-epoll) CMD=("$FLOOR" epoll "${PORT[floor-epoll]}") ;;
        # UPGRADE_MAX_CONCURRENT_PER_IP=0: the load generator opens up to 1,000 connections at once
        # from one address, past the default per-address handshake share (256).
        wsd) CMD=(env "PORT=${PORT[wsd]}" CLUSTER_WORKERS=1 "WSD_APP=$2" UPGRADE_MAX_CONCURRENT_PER_IP=0 "$WSD_BIN") ;;
        wsd-base) CMD=(env "PORT=${PORT[wsd-base]}" CLUSTER_WORKERS=1 "WSD_APP=$2" UPGRADE_MAX_CONCURRENT_PER_IP=0 "$WSD_BASE_BIN") ;;
        wsd-*) CMD=(env "PORT=${PORT[$1]}" CLUSTER_WORKERS=1 "WSD_APP=$2" "${ACCESS_ENV[@]}" "${KEY_ENV[$1]}" "$WSD_BIN") ;;
        tungstenite) CMD=(env "PORT=${PORT[tungstenite]}" "$LT_DIR/peers/tungstenite-echo/target/release/tungstenite-echo") ;;
        fastwebsockets) CMD=(env "PORT=${PORT[fastwebsockets]}" "$LT_DIR/peers/fastwebsockets-echo/target/release/fastwebsockets-echo") ;;
        bun) CMD=(env "PORT=${PORT[bun]}" "APP=$2" "$BUN" "$LT_DIR/peers/bun/server.js") ;;
        node-ws) CMD=(env "PORT=${PORT[node-ws]}" node "$LT_DIR/peers/node-ws/server.js") ;;
    esac
    case $1 in
        uws | floor-*) EXE=${CMD[0]} ;;
        bun) EXE=$BUN ;;
        node-ws) EXE=$(command -v node || true) ;;
        *) EXE=${CMD[-1]} ;;
    esac
}

# Which servers speak the PROTOCOL.md pub/sub subset (wsd is probed). The floors only echo (and
# hold idle connections).
declare -A PUBSUB=([bun]=1 [uws]=1 [wsd-base]=1)

if [ $# -eq 0 ]; then set -- $ALL_SERVERS; fi
for s in "$@"; do
    [ -n "${PORT[$s]:-}" ] || { log "unknown server '$s' (known: $ALL_SERVERS wsd-base wsd-hs256 wsd-es256 wsd-rs256)"; exit 2; }
    if [ "$s" = wsd-base ] && [ ! -x "${WSD_BASE_BIN:-}" ]; then
        log "wsd-base needs WSD_BASE_BIN=path to an executable wsd"; exit 2
    fi
done
HAVE_UWS_KIT=1
if [ ! -f "$UWS_KIT/build.sh" ]; then
    HAVE_UWS_KIT=0
    log "$SHARED is absent (no $UWS_KIT/build.sh): running without uWebSockets (no uws server, no lt: rows)"
fi

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
    if [[ " $* " == *" floor-"* ]]; then
        log "building the floor, floor-echo (release)"
        (cd "$ROOT" && cargo build --release -p floor-echo) || log "floor-echo build failed"
    fi
    js=()
    for s in "$@"; do case $s in bun | node-ws) js+=("$s") ;; esac; done
    if [ ${#js[@]} -gt 0 ]; then bash "$LT_DIR/peers/install.sh" "${js[@]}" || log "JavaScript peer install failed"; fi
fi
# uWebSockets: built once (its sources in ../shared do not change), also with NO_BUILD=1.
if [ "$HAVE_UWS_KIT" = 1 ] && { [ "${UWS_REBUILD:-0}" = 1 ] || [ ! -x "$UWS_OUT/load_test" ] ||
    [ ! -x "$UWS_OUT/uws-echo" ] || [ ! -x "$UWS_OUT/uws-pubsub" ]; }; then
    log "building uWebSockets peers into $UWS_OUT ($UWS_KIT/build.sh)"
    bash "$UWS_KIT/build.sh" "$UWS_OUT" >&2 || log "uWebSockets build failed"
fi
[ -x "$LOADGEN" ] || { log "missing $LOADGEN"; exit 1; }
HAVE_LT=0
[ -x "$UWS_OUT/load_test" ] && [ "$HAVE_UWS_KIT" = 1 ] && HAVE_LT=1
if [ "$HAVE_LT" = 0 ] && [[ " $SCENARIOS " == *" lt:"* ]]; then
    log "no uWebSockets load_test: the lt: rows are skipped"
    SCENARIOS=$(printf '%s\n' $SCENARIOS | grep -v '^lt:' | tr '\n' ' ')
fi
for s in "$@"; do
    case $s in
        wsd-hs256) QUERY[$s]="?token=$(auth_token HS256 "hs:$BENCH_SECRET")" ;;
        wsd-es256) QUERY[$s]="?token=$(auth_token ES256 tests/keys/ec.key)" ;;
        wsd-rs256) QUERY[$s]="?token=$(auth_token RS256 tests/keys/rsa.key)" ;;
        *) continue ;;
    esac
    [ "${#QUERY[$s]}" -gt 40 ] || { log "$s: no token (needs PyJWT: run scripts/test once, or set WSD_TEST_PYTHON)"; exit 1; }
done

SERVERS=()
for s in "$@"; do
    if [ "$s" = uws ] && [ "$HAVE_UWS_KIT" = 0 ]; then continue; fi
    server_cmd "$s" echo
    if [ -n "$EXE" ] && [ -x "$EXE" ]; then SERVERS+=("$s"); else log "skipping $s: ${EXE:-its binary} is missing"; fi
done
[ ${#SERVERS[@]} -gt 0 ] || { log "no server to measure"; exit 1; }
BASE=wsd
[[ " ${SERVERS[*]} " == *" uws "* ]] && BASE=uws

# The kernel thread that runs the server core's deferred softirq work.
KSOFT_PID=$(for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = "ksoftirqd/$SERVER_CPU" ] && echo "${d#/proc/}"; done | head -n1)
[ -n "$KSOFT_PID" ] || log "warning: no ksoftirqd/$SERVER_CPU thread found: the ksoftirqd column will be n/a"
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
# proc_ticks PID: utime + stime in clock ticks (fields counted after the last ')').
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
    s=${s##*) }
    awk '{print $12 + $13}' <<<"$s"
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

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

# rss_kib PID KEY: a Vm* line of /proc/PID/status in KiB.
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }

# run_lt SCENARIO SERVER_PID PORT JSON ERR: uWebSockets' load_test against the server, its TICK lines
# turned into the same JSON members as wsd-loadtest's echo result.
run_lt() {
    local scen=$1 pid=$2 port=$3 json=$4 err=$5 conns size lpid w d need i rss0 rss1 hwm
    conns=${scen#lt:}; size=${conns#*x}; conns=${conns%x*}
    w=$(((WARMUP + 3) / 4)); [ "$w" -ge 1 ] || w=1
    d=$(((DURATION + 3) / 4)); [ "$d" -ge 1 ] || d=1
    need=$((w + d))
    rss0=$(rss_kib "$pid" VmRSS)
    log "  SERVER_PID=$pid load_test $conns 127.0.0.1 $port 0 0 $size   (measured from TICK $w to TICK $need)"
    SERVER_PID=$pid taskset -c "$LOAD_CPU" "$UWS_OUT/load_test" "$conns" 127.0.0.1 "$port" 0 0 "$size" >"$err" 2>&1 &
    lpid=$!
    STARTED+=("$lpid")
    for i in $(seq $((need * 40 + 300))); do
        [ "$(grep -c '^TICK' "$err")" -ge "$need" ] && break
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.1
    done
    rss1=$(rss_kib "$pid" VmRSS) hwm=$(rss_kib "$pid" VmHWM)
    kill -TERM "$lpid" 2>/dev/null
    wait "$lpid" 2>/dev/null
    forget_pid "$lpid"
    # TICK t=<s> msgs=<total> srv=<ticks> lg=<ticks> busy=<machine ticks> all=<machine ticks>
    grep '^TICK' "$err" | awk -v w="$((w - 1))" -v n="$((need - 1))" -v hz="$CLK_TCK" -v r0="$rss0" -v r1="$rss1" -v p="$hwm" '
        { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[NR - 1, kv[1]] = kv[2] } }
        END {
            if (NR <= n) exit 1
            t = v[n, "t"] - v[w, "t"]; m = v[n, "msgs"] - v[w, "msgs"]
            s = (v[n, "srv"] - v[w, "srv"]) / hz; l = (v[n, "lg"] - v[w, "lg"]) / hz
            b = (v[n, "busy"] - v[w, "busy"]) / hz
            if (t <= 0 || m <= 0) exit 1
            o = b - s - l; if (o < 0) o = 0
            printf "{\"loadgen\":\"uws-load_test\",\"measured_s\":%.3f,\"messages\":%d,\"msg_per_s\":%.1f,", t, m, m / t
            printf "\"server_cpu_s\":%.2f,\"server_cpu_us_per_msg\":%.4f,\"loadgen_cpu_s\":%.2f,", s, s * 1e6 / m, l
            printf "\"loadgen_cpu_us_per_msg\":%.4f,\"other_cpu_s\":%.2f,", l * 1e6 / m, o
            printf "\"server_rss_start_kib\":%s,\"server_rss_end_kib\":%s,\"server_rss_peak_kib\":%s}\n", r0, r1, p
        }' >"$json" || { log "  load_test gave fewer than $need TICK lines"; return 1; }
    return 0
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
    url="ws://127.0.0.1:$port/ws${URL_QUERY:-}"
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

declare -A RATE OPCPU LGCPU LGUTIL SRVUTIL KIB DPC P99 OTHER OKRUNS ALLRUNS RSS0 RSS1 RSSP KSOFT CHG BYREP KIBREP

# record KEY SCENARIO JSON REP: adds one run's figures to the per-row lists; KSHARE (ksoftirqd CPU
# over the server's own during the run) charges the ksoftirqd share.
record() {
    local key=$1 scen=$2 json=$3 rep=$4 m op ks
    case $scen in
        echo:* | lt:*)
            op=$(jnum server_cpu_us_per_msg "$json")
            RATE[$key]+=" $(jnum msg_per_s "$json")"
            OPCPU[$key]+=" $op"
            LGCPU[$key]+=" $(jnum loadgen_cpu_us_per_msg "$json")"
            P99[$key]+=" $(json_p99 "$json")" ;;
        connect)
            op=$(jnum server_cpu_us_per_connect "$json")
            RATE[$key]+=" $(jnum connects_per_s "$json")"
            OPCPU[$key]+=" $op"
            KIBREP[$key|$rep]=$(jnum rss_kib_per_conn "$json")
            LGCPU[$key]+=" $(jnum loadgen_cpu_us_per_connect "$json")"
            KIB[$key]+=" $(jnum rss_kib_per_conn "$json")"
            RSS0[$key]+=" $(jnum rss_before_kib "$json")"
            RSS1[$key]+=" $(jnum rss_after_kib "$json")"
            RSSP[$key]+=" $(jnum rss_peak_kib "$json")"
            P99[$key]+=" $(json_p99 "$json")" ;;
        fanout | fanout:*)
            op=$(jnum server_cpu_us_per_delivery "$json")
            RATE[$key]+=" $(jnum deliveries_per_s "$json")"
            OPCPU[$key]+=" $op"
            LGCPU[$key]+=" $(jnum loadgen_cpu_us_per_delivery "$json")"
            DPC[$key]+=" $(jnum deliveries_per_server_cpu_s "$json")"
            P99[$key]+=" $(json_p99 "$json")" ;;
    esac
    ks=$(awk -v o="$op" -v k="${KSHARE:-}" 'BEGIN {if (o != "" && k != "") printf "%.4f", o * k}')
    KSOFT[$key]+=" $ks"
    if [ -n "$ks" ]; then
        CHG[$key]+=" $(awk -v o="$op" -v k="$ks" 'BEGIN {printf "%.4f", o + k}')"
        BYREP[$key|$rep]=$(awk -v o="$op" -v k="$ks" 'BEGIN {printf "%.4f", o + k}')
    elif [ -n "$op" ]; then
        CHG[$key]+=" $op"
        BYREP[$key|$rep]=$op
    fi
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
ALL_REPS=$((ECHO_REPS > REPS ? ECHO_REPS : REPS))
for rep in $(seq "$ALL_REPS"); do
    for scen in $SCENARIOS; do
        case $scen in
            echo:* | lt:*) [ "$rep" -le "$ECHO_REPS" ] || continue ;;
            *) [ "$rep" -le "$REPS" ] || continue ;;
        esac
        for k in $(seq 0 $((n - 1))); do
            s=${SERVERS[$(((k + rep - 1) % n))]}
            app=echo
            if [ "${scen%%:*}" = fanout ]; then
                [[ $s != floor-* ]] || continue
                app=pubsub
                if [ "${s%%-*}" = wsd ] && [ -z "${PUBSUB[wsd]:-}" ]; then
                    if probe_wsd_pubsub; then PUBSUB[wsd]=1; else
                        log "rep $rep fanout: wsd does not start with WSD_APP=pubsub yet: skipped"
                        continue
                    fi
                fi
                [ -n "${PUBSUB[$s]:-}" ] || [ -n "${PUBSUB[${s%%-*}]:-}" ] || continue
            fi
            key="$s|$scen"
            ALLRUNS[$key]=$((${ALLRUNS[$key]:-0} + 1))
            json="$OUT/$s-${scen/:/-}-rep$rep.json"
            err="$OUT/$s-${scen/:/-}-rep$rep.err"
            log "rep $rep/$ALL_REPS $s $scen ($(cut -d' ' -f1-3 /proc/loadavg))"
            for try in $(seq 0 "$RETRIES"); do
                if start_server "$s" "$app"; then
                    pid=$SERVER_PID
                    k0=$( [ -n "$KSOFT_PID" ] && proc_ticks "$KSOFT_PID") s0=$(proc_ticks "$pid")
                    if [ "${scen%%:*}" = lt ]; then
                        run_lt "$scen" "$pid" "${PORT[$s]}" "$json" "$err"
                    else
                        URL_QUERY=${QUERY[$s]:-} run_loadgen "$scen" "$pid" "${PORT[$s]}" "$json" "$err"
                    fi
                    rc=$?
                    k1=$( [ -n "$KSOFT_PID" ] && proc_ticks "$KSOFT_PID") s1=$(proc_ticks "$pid")
                    KSHARE=$(awk -v k0="$k0" -v k1="$k1" -v s0="$s0" -v s1="$s1" \
                        'BEGIN {if (k0 == "" || k1 == "" || s1 - s0 <= 0) print ""; else printf "%.6f", (k1 - k0) / (s1 - s0)}')
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
            record "$key" "$scen" "$json" "$rep"
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
        echo:* | lt:*)
            local c=${1#*:} b
            b=${c#*x}; c=${c%x*}
            if [ "$b" -ge 1024 ] && [ $((b % 1024)) -eq 0 ]; then b="$((b / 1024)) KiB"; else b="$b B"; fi
            printf 'echo %s conns × %s' "$c" "$b"
            [ "${1%%:*}" = echo ] || printf ' (uWS load_test)' ;;
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

# rep_ratios TABLE KEY BASEKEY: the same-repetition ratios TABLE[KEY|rep] / TABLE[BASEKEY|rep].
rep_ratios() {
    local -n t=$1
    local r
    for r in $(seq "$ALL_REPS"); do
        div "${t[$2|$r]:-}" "${t[$3|$r]:-}"
        echo
    done
}
# ratio_cell TABLE KEY BASEKEY: "median [lowest–highest]" of the same-repetition ratios.
ratio_cell() {
    local rs m lo hi
    rs=$(rep_ratios "$@" | grep -E '^[0-9.]+$')
    [ -n "$rs" ] || { printf 'n/a'; return; }
    m=$(median $rs) lo=$(printf '%s\n' $rs | sort -g | head -n1) hi=$(printf '%s\n' $rs | sort -g | tail -n1)
    if [ "$(printf '%s\n' $rs | wc -l)" -gt 1 ]; then
        printf '%.2f [%.2f–%.2f]' "$m" "$lo" "$hi"
    else
        printf '%.2f' "$m"
    fi
}

ELAPSED=$(($(date +%s) - START_TIME))
{
    echo "wsd comparison: medians of $REPS run(s) ($ECHO_REPS for echo and lt rows), ${DURATION} s measured after" \
        "${WARMUP} s warm-up; server on core $SERVER_CPU, load generator on core $LOAD_CPU; $(uname -r);" \
        "$(date -u +%Y-%m-%dT%H:%MZ); took ${ELAPSED} s; load average (1/5/15 min) $LOAD_START at the start," \
        "$(cut -d' ' -f1-3 /proc/loadavg) at the end"
    echo
    echo "| scenario | server | rate /s | server CPU µs/op | ksoftirqd/$SERVER_CPU µs/op | charged µs/op | ÷ $BASE (same-run, [range]) | ÷ floor-uring | idle KiB/conn | server RSS MiB start → end (peak) | deliveries per server CPU-s | loadgen CPU µs/op | p99 µs | load check | other load (cores, max) | ok runs |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    for scen in $SCENARIOS; do
        base_kib=$(median ${KIB["$BASE|$scen"]:-})
        for s in "${SERVERS[@]}"; do
            key="$s|$scen"
            [ -n "${ALLRUNS[$key]:-}" ] || continue
            op=$(median ${OPCPU[$key]:-})
            kib=$(median ${KIB[$key]:-})
            kibcell=$(fmt '%.2f' "$kib")
            if [ "$scen" = connect ] && [ "$kibcell" != n/a ]; then
                kibcell="$kibcell ($(fmt '%.2f' "$(div "$kib" "$base_kib")")×)"
            fi
            floor=n/a
            case $scen in echo:* | lt:*) floor=$(ratio_cell BYREP "$key" "floor-uring|$scen") ;; esac
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n' "$(label "$scen")" "$s" \
                "$(fmt '%.0f' "$(median ${RATE[$key]:-})")" \
                "$(fmt '%.2f' "$op")" \
                "$(fmt '%.2f' "$(median ${KSOFT[$key]:-})")" \
                "$(fmt '%.2f' "$(median ${CHG[$key]:-})")" \
                "$(ratio_cell BYREP "$key" "$BASE|$scen")" \
                "$floor" \
                "$kibcell" \
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
    echo "delivery or per connect (utime+stime of the server process). ksoftirqd/$SERVER_CPU: that kernel thread's CPU over the run,"
    echo "charged per op in proportion to the server's own. charged = server + ksoftirqd. ÷ $BASE and ÷ floor-uring: charged µs/op"
    echo "over theirs in the same repetition, median [lowest–highest] of the repetitions; idle KiB/conn (×$BASE's) on connect rows."
    echo "load check: ok when the load generator used under $(awk -v m="$LOADGEN_MAX" 'BEGIN {print m * 100}')% of its core or the server"
    echo "was at ≥ $(awk -v m="$SERVER_BUSY" 'BEGIN {print m * 100}')% of its own."
} | tee "$OUT/table.md"

for key in "${!ALLRUNS[@]}"; do
    [ "${OKRUNS[$key]:-0}" -eq "${ALLRUNS[$key]}" ] || exit 1
done

#!/usr/bin/env bash
# RSS of a one-worker echo server under load and after it: for each wsd build in BINS and backend
# in BACKENDS (alternating within each of REPS repetitions), a fresh server on $SERVER_CPU, its
# VmRSS idle, then `wsd-loadtest echo` (100 connections, SIZE-byte messages, DURATION s, on
# $LOAD_CPU) with the server's RSS at the start, end and peak of the window, then VmRSS 3 s after
# the load stopped. Also the Rss of each 8192 kB mapping (io_uring's receive ring, 256 × 32 KiB,
# once it is a mapping of its own). RSS only: safe to run while other work loads the machine.
# Usage: BINS="/path/before /path/after" bash loadtest/echo-rss.sh
#        (LOADGEN, REPS=2, SIZE=20, DURATION=10, BACKENDS="uring epoll")
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${LOADGEN:-$ROOT/target/release/wsd-loadtest}
BINS=${BINS:-$ROOT/target/release/wsd} BACKENDS=${BACKENDS:-uring epoll}
REPS=${REPS:-2} SIZE=${SIZE:-20} DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$(mktemp -d /tmp/echo-rss.XXXXXX)}
ulimit -n "$(ulimit -Hn)"
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
ring() { awk '/^[0-9a-f]+-[0-9a-f]+ /{sz=0; next} /^Size:/{sz=$2} /^Rss:/{if (sz==8192) printf "%s ", $2}' "/proc/$1/smaps"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo "| rep | build | backend | size | idle KiB | load: start → end (peak) KiB | msg/s | 3 s after KiB | ring Rss kB: load → after |"
echo "|---|---|---|---:|---:|---|---:|---:|---|"
for rep in $(seq "$REPS"); do
  for bin in $BINS; do
    for backend in $BACKENDS; do
      p=$(port)
      env PORT=$p HOST=127.0.0.1 WSD_APP=echo WSD_IO=$backend CLUSTER_WORKERS=1 LOG_LEVEL=warn \
        taskset -c "$SERVER_CPU" "$bin" 2>"$OUT/wsd.log" &
      pid=$!
      for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
      sleep 1
      idle=$(vm $pid VmRSS)
      json="$OUT/$rep.$(basename "$bin").$backend.json"
      taskset -c "$LOAD_CPU" "$LOADGEN" echo --url "ws://127.0.0.1:$p/ws" --connections 100 \
        --size "$SIZE" --duration "$DURATION" --warmup 1 --server-pid $pid --json >"$json" 2>/dev/null
      ring_load=$(ring $pid)
      sleep 3
      quiet=$(vm $pid VmRSS)
      ring_quiet=$(ring $pid)
      load=$(python3 -c "import json; d=json.load(open('$json')); print(f\"{d['server_rss_start_kib']} → {d['server_rss_end_kib']} ({d['server_rss_peak_kib']}) | {d['msg_per_s']:.0f}\")" 2>/dev/null || echo "? | ?")
      echo "| $rep | $bin | $backend | $SIZE | $idle | $load | $quiet | ${ring_load:--} → ${ring_quiet:--} |"
      kill $pid; wait $pid 2>/dev/null
    done
  done
done
echo "(raw JSON in $OUT)"

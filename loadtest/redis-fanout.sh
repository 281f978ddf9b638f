#!/bin/bash
# Cross-instance fan-out through Redis (issue 13): 1 publisher on instance A -> 1,000 subscribers,
# in three variants run alternately in the same run, REPS times each:
#   one        one wsd, no Redis, 1,000 subscribers on it
#   one+redis  one wsd with REDIS_URL, 1,000 subscribers on it (the engine's cost when all is local)
#   two        wsd A and wsd B sharing a Redis, 500 subscribers on each (every odd one on B)
# Servers (each wsd 1 worker, and redis-server) on core 0, wsd-loadtest on core 1.
# Prints per run: deliveries per server CPU-second (all wsd processes), p50/p99 latency, Redis CPU
# per publication and bytes Redis carried (in + out) per publication.
# Needs: cargo build --release -p wsd -p wsd-loadtest; redis-server. LOAD: "" (closed loop,
# window 32) or "--rate N". About 15 s per run.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 20000
REPS=${REPS:-3}
DURATION=${DURATION:-5}
LOAD=${LOAD:-}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
rport=$((20000 + RANDOM % 10000))
taskset -c 0 redis-server --port $rport --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null &
rpid=$!; pids+=($rpid)
sleep 0.5
rcli() { redis-cli -p $rport "$@"; }
cpu_of() { awk '{print $14+$15}' /proc/$1/stat; }   # clock ticks
tck=$(getconf CLK_TCK)
start_wsd() { # port redis(yes/no)
  local url=""
  [ "$2" = yes ] && url="redis://127.0.0.1:$rport"
  # REDIS_URL only when used: wsd refuses an empty value (exit 2).
  env ${url:+REDIS_URL=$url} CLUSTER_WORKERS=1 WSD_APP=pubsub PORT=$1 HOST=127.0.0.1 LOG_LEVEL=warn \
    taskset -c 0 target/release/wsd >/dev/null 2>&1 &
  echo $!
}
metric() { curl -s http://127.0.0.1:$1/metrics | awk -v n="$2" '$1==n {print $2}'; }
run=0
for rep in $(seq 1 "$REPS"); do
  for variant in one one+redis two; do
    run=$((run+1))
    pa=$((9400 + run*2)); pb=$((pa+1))
    case $variant in
      one) a=$(start_wsd $pa no); b="" ;;
      one+redis) a=$(start_wsd $pa yes); b="" ;;
      two) a=$(start_wsd $pa yes); b=$(start_wsd $pb yes) ;;
    esac
    sleep 1
    extra=()
    [ -n "$b" ] && extra=(--sub-url ws://127.0.0.1:$pb/ws --extra-pid "$b")
    r0=$(cpu_of $rpid)
    n0=$(rcli INFO stats | awk -F: '/^total_net_(input|output)_bytes/ {s+=$2} END {print s}')
    p0=$( [ "$variant" = one ] && echo 0 || metric $pa wsd_redis_published_total )
    # shellcheck disable=SC2086
    out=$(taskset -c 1 target/release/wsd-loadtest fanout --url ws://127.0.0.1:$pa/ws "${extra[@]}" \
      --subscribers 1000 --publishers 1 --topics 1 --window 32 $LOAD --duration "$DURATION" --warmup 2 \
      --drain 3 --server-pid "$a" --json 2>"$tmp/lt.err") || { cat "$tmp/lt.err" >&2; exit 1; }
    r1=$(cpu_of $rpid)
    n1=$(rcli INFO stats | awk -F: '/^total_net_(input|output)_bytes/ {s+=$2} END {print s}')
    p1=$( [ "$variant" = one ] && echo 0 || metric $pa wsd_redis_published_total )
    kill -TERM "$a" ${b:+"$b"}; wait "$a" ${b:+"$b"} 2>/dev/null || true
    python3 - "$variant" "$out" "$r0" "$r1" "$n0" "$n1" "$p0" "$p1" "$tck" <<'PY'
import json, sys
v, o = sys.argv[1], json.loads(sys.argv[2])
r0, r1, n0, n1, p0, p1, tck = (float(x) for x in sys.argv[3:])
pubs = p1 - p0
lat = o.get("latency_us") or {}
redis = ""
if pubs > 0:
    redis = f" redis_cpu_us_per_pub={(r1 - r0) / tck / pubs * 1e6:.1f} redis_bytes_per_pub={(n1 - n0) / pubs:.0f} (pubs {pubs:.0f})"
print(f"{v:10} lost={o['lost']} dup={o['duplicates']} reord={o['reordered']} "
      f"deliveries_per_server_cpu_s={o['deliveries_per_server_cpu_s']} p50_us={lat.get('p50')} p99_us={lat.get('p99')} "
      f"other_cpu_s={o['other_cpu_s']}{redis}")
PY
  done
done

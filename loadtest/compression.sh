#!/usr/bin/env bash
# COMPRESSION=shared against COMPRESSION=off in the same run (BENCHMARKS.md, "Compression"):
#   fanout   1 publisher -> $SUBS subscribers of one topic, closed loop (window $WINDOW) or, with
#            RATE=R, open loop at R publications/s (the same offered load for both), a 2 KiB
#            feed-like JSON payload (--size 2048 --feed-pad); every client offers permessage-deflate
#            as browsers do, so only the server's setting differs. Server CPU per delivery and bytes
#            on the wire per delivery (data frames as received, compressed as sent).
#   connect  $CONNECT_N connections offering permessage-deflate held idle: server RSS per connection.
# The server runs pinned to $SERVER_CPU with one worker, wsd-loadtest to $LOAD_CPU; the two settings
# alternate within each of $REPS repetitions; medians are printed as one markdown table.
# Usage: bash loadtest/compression.sh   (needs target/release/wsd and wsd-loadtest; NO_BUILD=1 skips)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3} DURATION=${DURATION:-5} WARMUP=${WARMUP:-1} SUBS=${SUBS:-1000} WINDOW=${WINDOW:-32}
CONNECT_N=${CONNECT_N:-5000} SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1} RATE=${RATE:-}
rate=(); [ -n "$RATE" ] && rate=(--rate "$RATE")
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q -p wsd -p wsd-loadtest
wsd=target/release/wsd lt=target/release/wsd-loadtest
ulimit -n "$(ulimit -Hn)"

run() { # mode scenario rep
  local mode=$1 scen=$2 rep=$3 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  PORT=$port HOST=127.0.0.1 WSD_APP=pubsub CLUSTER_WORKERS=1 COMPRESSION=$mode LOG_LEVEL=warn \
    MAX_CONNECTIONS=auto taskset -c "$SERVER_CPU" "$wsd" 2> "$OUT/wsd-$mode-$scen-$rep.log" &
  local pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.05
  done
  local url=ws://127.0.0.1:$port/ws
  if [ "$scen" = fanout ]; then
    taskset -c "$LOAD_CPU" "$lt" fanout --url "$url" --subscribers "$SUBS" --window "$WINDOW" --size 2048 \
      --feed-pad --compression "${rate[@]}" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$pid" --json \
      > "$OUT/$mode-$scen-$rep.json"
  else
    taskset -c "$LOAD_CPU" "$lt" connect --url "$url" --connections "$CONNECT_N" --compression \
      --server-pid "$pid" --json > "$OUT/$mode-$scen-$rep.json"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
  for scen in fanout connect; do
    for mode in off shared; do run "$mode" "$scen" "$rep"; done
  done
done

python3 - "$OUT" "$REPS" <<'PY'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
def med(mode, scen, key):
    vals = [json.load(open(f"{out}/{mode}-{scen}-{r}.json"))[key] for r in range(1, reps + 1)]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")
print("| COMPRESSION | srv µs/delivery | wire bytes/delivery | deliveries/s | deflate agreed | idle KiB/conn (deflate offered) |")
print("|---|---|---|---|---|---|")
for mode in ("off", "shared"):
    print(f"| {mode} | {med(mode,'fanout','server_cpu_us_per_delivery'):.3f} | {med(mode,'fanout','wire_bytes_per_delivery'):.0f} "
          f"| {med(mode,'fanout','deliveries_per_s'):.0f} | {med(mode,'fanout','deflate_agreed'):.0f} "
          f"| {med(mode,'connect','rss_kib_per_conn'):.3f} |")
print(f"(medians of {reps}; raw JSON in {out})")
PY

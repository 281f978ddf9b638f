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
# PEERS="uws bun" (default: those available) adds, in the same repetitions, uWebSockets' uws-pubsub-deflate
# (SHARED_COMPRESSOR: compressed once per publish; built by loadtest/compare.sh into target/peers/uws, or
# UWS_OUT) and Bun's peer with DEFLATE=shared (perMessageDeflate, its shared compressor; Bun installed by
# loadtest/peers/install.sh bun). Rows: wsd COMPRESSION=off, wsd shared, then the peers.
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
UWS_OUT=${UWS_OUT:-target/peers/uws}
BUN=loadtest/peers/bun/node_modules/@oven/bun-linux-x64/bin/bun
# The shared kit's uws-pubsub-deflate negotiates permessage-deflate but publishes with uWS's
# `compress = false`, so it sends every publication uncompressed. uws-pubsub-deflate-on is the same
# program publishing with `compress = true` (SHARED_COMPRESSOR: compressed once per publish), built
# here from ../shared/peers/uws with that one argument changed (nothing of uWS lands in this tree).
UWS_KIT=${UWS_KIT:-$(cd .. && pwd)/shared/peers/uws}
if [ ! -x "$UWS_OUT/uws-pubsub-deflate-on" ] && [ -f "$UWS_KIT/PubSubServer.cpp" ] && [ -f /usr/include/zlib.h ]; then
  echo "building $UWS_OUT/uws-pubsub-deflate-on from $UWS_KIT" >&2
  obj=$(mktemp -d)
  sed '/publish(/s/uWS::OpCode::TEXT, false)/uWS::OpCode::TEXT, true)/' "$UWS_KIT/PubSubServer.cpp" > "$obj/PubSubServer.cpp"
  if [ "$(grep -c 'uWS::OpCode::TEXT, true)' "$obj/PubSubServer.cpp")" = 2 ]; then
    (cd "$obj" && gcc -O3 -flto -march=native -DLIBUS_NO_SSL -I"$UWS_KIT/uSockets/src" -std=c11 -c \
      "$UWS_KIT"/uSockets/src/*.c "$UWS_KIT"/uSockets/src/eventing/*.c "$UWS_KIT"/uSockets/src/crypto/*.c) &&
      mkdir -p "$UWS_OUT" &&
      g++ -std=c++20 -O3 -flto -march=native -I"$UWS_KIT/uWebSockets/src" -I"$UWS_KIT/uSockets/src" \
        -I"$UWS_KIT" -DLIBUS_NO_SSL -DWSD_PEER_DEFLATE "$obj/PubSubServer.cpp" "$obj"/*.o -lz \
        -o "$UWS_OUT/uws-pubsub-deflate-on" || echo "uws-pubsub-deflate-on: build failed" >&2
  else
    echo "uws-pubsub-deflate-on: the publish calls in PubSubServer.cpp changed; not built" >&2
  fi
  rm -rf "$obj"
fi
if [ -z "${PEERS+x}" ]; then
  PEERS=""
  [ -x "$UWS_OUT/uws-pubsub-deflate" ] && PEERS="$PEERS uws"
  [ -x "$UWS_OUT/uws-pubsub-deflate-on" ] && PEERS="$PEERS uws-on"
  [ -x "$BUN" ] && PEERS="$PEERS bun"
fi
MODES="off shared $PEERS"
ulimit -n "$(ulimit -Hn)"

run() { # mode scenario rep
  local mode=$1 scen=$2 rep=$3 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  case $mode in
    uws) taskset -c "$SERVER_CPU" "$UWS_OUT/uws-pubsub-deflate" "$port" > "$OUT/uws-$scen-$rep.log" 2>&1 & ;;
    uws-on) taskset -c "$SERVER_CPU" "$UWS_OUT/uws-pubsub-deflate-on" "$port" > "$OUT/uws-on-$scen-$rep.log" 2>&1 & ;;
    bun) PORT=$port APP=pubsub DEFLATE=shared taskset -c "$SERVER_CPU" "$BUN" loadtest/peers/bun/server.js \
      > "$OUT/bun-$scen-$rep.log" 2>&1 & ;;
    *) PORT=$port HOST=127.0.0.1 WSD_APP=pubsub CLUSTER_WORKERS=1 COMPRESSION=$mode LOG_LEVEL=warn \
      MAX_CONNECTIONS=auto UPGRADE_MAX_CONCURRENT_PER_IP=0 taskset -c "$SERVER_CPU" "$wsd" \
      2> "$OUT/wsd-$mode-$scen-$rep.log" & ;;
  esac
  local pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.05
  done
  local url=ws://127.0.0.1:$port/ws
  if [ "$scen" = fanout ]; then
    taskset -c "$LOAD_CPU" "$lt" fanout --url "$url" --subscribers "$SUBS" --window "$WINDOW" --size 2048 \
      --feed-pad --compression "${rate[@]}" --duration "$DURATION" --warmup "$WARMUP" --server-pid "$pid" --json \
      > "$OUT/$mode-$scen-$rep.json" || true   # a server that cannot keep up exits non-zero: reported as lost
  else
    taskset -c "$LOAD_CPU" "$lt" connect --url "$url" --connections "$CONNECT_N" --compression \
      --server-pid "$pid" --json > "$OUT/$mode-$scen-$rep.json" || true
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
  for scen in fanout connect; do
    for mode in $MODES; do run "$mode" "$scen" "$rep"; done
  done
done

python3 - "$OUT" "$REPS" $MODES <<'PY'
import json, statistics, sys
out, reps, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(mode, scen, key):
    vals = []
    for r in range(1, reps + 1):
        try:
            vals.append(json.load(open(f"{out}/{mode}-{scen}-{r}.json"))[key])
        except (OSError, ValueError, KeyError):
            pass
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")
names = {"off": "wsd, COMPRESSION=off", "shared": "wsd, COMPRESSION=shared", "uws": "uWS SHARED_COMPRESSOR, publish(compress=false) (the kit's peer)",
         "uws-on": "uWS SHARED_COMPRESSOR, publish(compress=true)",
         "bun": "Bun perMessageDeflate shared"}
print("| server | srv µs/delivery | wire bytes/delivery | deliveries/s | deflate agreed | lost (median) | idle KiB/conn (deflate offered) |")
print("|---|---|---|---|---|---|---|")
for mode in modes:
    print(f"| {names[mode]} | {med(mode,'fanout','server_cpu_us_per_delivery'):.3f} | {med(mode,'fanout','wire_bytes_per_delivery'):.0f} "
          f"| {med(mode,'fanout','deliveries_per_s'):.0f} | {med(mode,'fanout','deflate_agreed'):.0f} "
          f"| {med(mode,'fanout','lost'):.0f} "
          f"| {med(mode,'connect','rss_kib_per_conn'):.3f} |")
print(f"(medians of {reps}; raw JSON in {out})")
PY

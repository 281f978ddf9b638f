#!/bin/bash
# Relay overhead (issue 4): fan-out 1 -> 1000 on one worker against two workers, both pinned to core 0,
# wsd-loadtest on core 1, 3 alternating repetitions. Prints server CPU us per delivery per run.
# Needs release builds: cargo build --release -p wsd -p wsd-loadtest. Bounded: about 2 minutes.
cd "$(dirname "$0")/.."
ulimit -n 20000
for rep in 1 2 3; do
  for w in 1 2; do
    port=$((9300 + rep*10 + w))
    CLUSTER_WORKERS=$w WSD_APP=pubsub PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn taskset -c 0 target/release/wsd 2>/dev/null &
    pid=$!
    sleep 0.5
    out=$(taskset -c 1 target/release/wsd-loadtest fanout --url ws://127.0.0.1:$port/ws --subscribers 1000 --publishers 1 --topics 1 --window 32 --duration 8 --warmup 2 --drain 3 --server-pid $pid --json 2>/dev/null)
    h=$(curl -s http://127.0.0.1:$port/health)
    kill -TERM $pid; wait $pid 2>/dev/null
    python3 - "$w" "$out" "$h" <<'PY'
import json,sys
w=sys.argv[1]; o=json.loads(sys.argv[2]); h=json.loads(sys.argv[3])
keys=['server_cpu_us_per_delivery','deliveries_per_server_cpu_s','other_cpu_s']
subs=[x['subscriptions'] for x in h['workers']]
print(f"workers={w} lost={o.get('lost')} dup={o.get('duplicates')} reord={o.get('reordered')} subs/worker={subs} " + " ".join(f"{k}={o[k]}" for k in keys))
PY
  done
done

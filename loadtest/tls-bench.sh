#!/usr/bin/env bash
# wss:// against ws:// on the same wsd build, in the same run: server CPU per message for echo
# 100x20 B and 100x16 KiB, per delivery for a 1 -> 1,000 fan-out, per connection for connects
# (TLS: a full ECDHE + ECDSA P-256 handshake each), and idle memory per connection.
# Server pinned to $SERVER_CPU, load generator to $LOAD_CPU; plain and TLS alternate within each
# repetition; prints the median of $REPS per row and the wss/ws ratio.
# Usage: bash loadtest/tls-bench.sh   (WSD_BIN, LOADGEN, REPS=3, DURATION=5, CONNECT_N=5000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSD_BIN=${WSD_BIN:-$ROOT/target/release/wsd}
LOADGEN=${LOADGEN:-$ROOT/target/release/wsd-loadtest}
REPS=${REPS:-3} DURATION=${DURATION:-5} CONNECT_N=${CONNECT_N:-5000}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
OUT=$(mktemp -d /tmp/tls-bench.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -addext basicConstraints=critical,CA:FALSE -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run SCHEME APP NAME LOADGEN-ARGS...: one server, one load run, JSON to $OUT/NAME.SCHEME.REP.json
run() {
  local scheme=$1 app=$2 name=$3 rep=$4; shift 4
  local p; p=$(port)
  local tls=()
  [ "$scheme" = wss ] && tls=(SSL_CERT="$OUT/cert.pem" SSL_KEY="$OUT/key.pem")
  env "${tls[@]}" PORT=$p HOST=127.0.0.1 WSD_APP=$app CLUSTER_WORKERS=1 LOG_LEVEL=warn \
    taskset -c "$SERVER_CPU" "$WSD_BIN" 2>"$OUT/wsd.log" &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
  taskset -c "$LOAD_CPU" "$LOADGEN" "$1" --url "$scheme://127.0.0.1:$p/ws" --ca "$OUT/cert.pem" \
    --server-pid $pid --json "${@:2}" > "$OUT/$name.$scheme.$rep.json" || true
  kill $pid; wait $pid 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
  for scheme in ws wss; do
    run $scheme echo echo20 $rep echo --connections 100 --size 20 --duration $DURATION --warmup 1
    run $scheme echo echo16k $rep echo --connections 100 --size 16384 --duration $DURATION --warmup 1
    run $scheme pubsub fanout $rep fanout --subscribers 1000 --duration $DURATION --warmup 1
    run $scheme echo connect $rep connect --connections $CONNECT_N --concurrency 100
  done
done

python3 - "$OUT" "$REPS" <<'PY'
import json, statistics, sys, glob
out, reps = sys.argv[1], int(sys.argv[2])
def med(name, scheme, key):
    vals = []
    for f in glob.glob(f"{out}/{name}.{scheme}.*.json"):
        try:
            d = json.load(open(f))
        except Exception:
            continue
        v = d
        for k in key.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    return (statistics.median(vals), len(vals)) if vals else (None, 0)
rows = [
    ("echo 100x20 B", "echo20", "server_cpu_us_per_msg", "µs/msg"),
    ("echo 100x16 KiB", "echo16k", "server_cpu_us_per_msg", "µs/msg"),
    ("fan-out 1->1,000", "fanout", "server_cpu_us_per_delivery", "µs/delivery"),
    ("connect (full handshake)", "connect", "server_cpu_us_per_connect", "µs/connection"),
    ("idle memory", "connect", "rss_kib_per_conn", "KiB/connection"),
]
print(f"| scenario | ws | wss | wss/ws | unit | runs |")
print(f"|---|---|---|---|---|---|")
for label, name, key, unit in rows:
    a, na = med(name, "ws", key)
    b, nb = med(name, "wss", key)
    ratio = f"{b / a:.2f}x" if a and b else "n/a"
    fa = f"{a:.2f}" if a is not None else "n/a"
    fb = f"{b:.2f}" if b is not None else "n/a"
    print(f"| {label} | {fa} | {fb} | {ratio} | {unit} | {na}+{nb} |")
print(f"(raw JSON in {out})")
PY

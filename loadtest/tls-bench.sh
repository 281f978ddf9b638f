#!/usr/bin/env bash
# wss:// against ws:// on the same wsd build, in the same run: server CPU per message for echo
# 100x20 B and 100x16 KiB, per delivery for a 1 -> 1,000 fan-out, per connection for connects
# (TLS: a full ECDHE + ECDSA P-256 handshake each), and idle memory per connection.
# Server pinned to $SERVER_CPU, load generator to $LOAD_CPU; plain and TLS alternate within each
# repetition; prints the median of $REPS per row and the wss/ws ratio.
# SERVERS="wsd uws" (default) also runs uWebSockets' uws-echo/uws-pubsub and their OpenSSL builds
# uws-*-tls (built from ../shared/peers/uws by compare.sh into target/peers/uws, or UWS_OUT) in the
# same repetitions, and prints wsd's wss figure over uWS's; without those binaries, wsd only.
# Usage: bash loadtest/tls-bench.sh   (WSD_BIN, LOADGEN, REPS=3, DURATION=5, CONNECT_N=5000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSD_BIN=${WSD_BIN:-$ROOT/target/release/wsd}
LOADGEN=${LOADGEN:-$ROOT/target/release/wsd-loadtest}
REPS=${REPS:-3} DURATION=${DURATION:-5} CONNECT_N=${CONNECT_N:-5000}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
UWS_OUT=${UWS_OUT:-$ROOT/target/peers/uws}
SERVERS=${SERVERS:-wsd uws}
if [[ " $SERVERS " == *" uws "* ]] && ! [ -x "$UWS_OUT/uws-echo-tls" -a -x "$UWS_OUT/uws-pubsub-tls" ]; then
  echo "no uWebSockets TLS peers in $UWS_OUT (run loadtest/compare.sh uws once): wsd only" >&2
  SERVERS=wsd
fi
OUT=$(mktemp -d /tmp/tls-bench.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -addext basicConstraints=critical,CA:FALSE -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run SERVER SCHEME APP NAME REP LOADGEN-ARGS...: one server, one load run, JSON to
# $OUT/SERVER-NAME.SCHEME.REP.json
run() {
  local server=$1 scheme=$2 app=$3 name=$4 rep=$5; shift 5
  local p; p=$(port)
  local tls=()
  [ "$scheme" = wss ] && tls=(SSL_CERT="$OUT/cert.pem" SSL_KEY="$OUT/key.pem")
  if [ "$server" = uws ]; then
    local exe="$UWS_OUT/uws-$app"
    [ "$scheme" = wss ] && exe="$exe-tls"
    env "${tls[@]}" taskset -c "$SERVER_CPU" "$exe" "$p" >"$OUT/uws.log" 2>&1 &
  else
    env "${tls[@]}" PORT=$p HOST=127.0.0.1 WSD_APP=$app CLUSTER_WORKERS=1 LOG_LEVEL=warn \
      UPGRADE_MAX_CONCURRENT_PER_IP=0 taskset -c "$SERVER_CPU" "$WSD_BIN" 2>"$OUT/wsd.log" &
  fi
  local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
  taskset -c "$LOAD_CPU" "$LOADGEN" "$1" --url "$scheme://127.0.0.1:$p/ws" --ca "$OUT/cert.pem" \
    --server-pid $pid --json "${@:2}" > "$OUT/$server-$name.$scheme.$rep.json" || true
  kill $pid; wait $pid 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
  for server in $SERVERS; do
    for scheme in ws wss; do
      run $server $scheme echo echo20 $rep echo --connections 100 --size 20 --duration $DURATION --warmup 1
      run $server $scheme echo echo16k $rep echo --connections 100 --size 16384 --duration $DURATION --warmup 1
      run $server $scheme pubsub fanout $rep fanout --subscribers 1000 --duration $DURATION --warmup 1
      run $server $scheme echo connect $rep connect --connections $CONNECT_N --concurrency 100
    done
  done
done

python3 - "$OUT" "$REPS" $SERVERS <<'PY'
import json, statistics, sys, glob
out, reps, servers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(server, name, scheme, key):
    vals = []
    for f in glob.glob(f"{out}/{server}-{name}.{scheme}.*.json"):
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
fmt = lambda v: f"{v:.2f}" if v is not None else "n/a"
ratio = lambda a, b: f"{b / a:.2f}x" if a and b else "n/a"
head = "| scenario | unit |"
for s in servers:
    head += f" {s} ws | {s} wss | {s} wss/ws |"
if "uws" in servers and "wsd" in servers:
    head += " wsd wss / uws wss |"
print(head)
print("|---" * (head.count("|") - 1) + "|")
for label, name, key, unit in rows:
    line = f"| {label} | {unit} |"
    wss = {}
    for s in servers:
        a, na = med(s, name, "ws", key)
        b, nb = med(s, name, "wss", key)
        wss[s] = b
        line += f" {fmt(a)} | {fmt(b)} | {ratio(a, b)} ({na}+{nb} runs) |"
    if "uws" in servers and "wsd" in servers:
        line += f" {ratio(wss['uws'], wss['wsd'])} |"
    print(line)
print(f"(raw JSON in {out})")
PY

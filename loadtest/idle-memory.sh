#!/usr/bin/env bash
# Idle memory per connection, ws:// and wss://, on both backends, for one or more wsd builds in
# the same run: `wsd-loadtest connect` holds CONNECT_N connections idle (CONCURRENCY upgrades in
# flight) against a fresh one-worker echo server and reports (VmRSS after - VmRSS before) /
# connections held. Builds, backends and schemes alternate within each repetition; prints the
# median of $REPS per row. RSS only: safe to run while other work loads the machine.
# Usage: WSD_BINS="/path/before /path/after" bash loadtest/idle-memory.sh
#        (LOADGEN, REPS=3, CONNECT_N=5000, CONCURRENCY=100, BACKENDS="uring epoll", SCHEMES="ws wss",
#        SETTLE=2: seconds held idle before the second reading; 12 is past HANDSHAKE_TIMEOUT, when
#        the handshake deadlines are gone)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSD_BINS=${WSD_BINS:-$ROOT/target/release/wsd}
LOADGEN=${LOADGEN:-$ROOT/target/release/wsd-loadtest}
REPS=${REPS:-3} CONNECT_N=${CONNECT_N:-5000} CONCURRENCY=${CONCURRENCY:-100} SETTLE=${SETTLE:-2}
BACKENDS=${BACKENDS:-uring epoll} SCHEMES=${SCHEMES:-ws wss}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
ulimit -n "$(ulimit -Hn)"
OUT=$(mktemp -d /tmp/idle-memory.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -addext basicConstraints=critical,CA:FALSE -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for rep in $(seq "$REPS"); do
  i=0
  for bin in $WSD_BINS; do
    i=$((i + 1))
    for backend in $BACKENDS; do
      for scheme in $SCHEMES; do
        p=$(port)
        tls=()
        [ "$scheme" = wss ] && tls=(SSL_CERT="$OUT/cert.pem" SSL_KEY="$OUT/key.pem")
        env "${tls[@]}" PORT=$p HOST=127.0.0.1 WSD_APP=echo WSD_IO=$backend CLUSTER_WORKERS=1 \
          LOG_LEVEL=warn UPGRADE_MAX_CONCURRENT_PER_IP=0 taskset -c "$SERVER_CPU" "$bin" \
          2>"$OUT/wsd.log" &
        pid=$!
        for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
        taskset -c "$LOAD_CPU" "$LOADGEN" connect --url "$scheme://127.0.0.1:$p/ws" \
          --ca "$OUT/cert.pem" --connections "$CONNECT_N" --concurrency "$CONCURRENCY" \
          --settle "$SETTLE" --server-pid $pid --json > "$OUT/$i.$backend.$scheme.$rep.json" || true
        kill $pid; wait $pid 2>/dev/null || true
      done
    done
  done
done

python3 - "$OUT" $WSD_BINS <<'PY'
import json, statistics, sys, glob
out, bins = sys.argv[1], sys.argv[2:]
print("| build | backend | scheme | KiB/connection (median) | runs | RSS before → after, MiB (median run) |")
print("|---|---|---|---:|---|---|")
for i, b in enumerate(bins, 1):
    for backend in ("uring", "epoll"):
        for scheme in ("ws", "wss"):
            runs = []
            for f in sorted(glob.glob(f"{out}/{i}.{backend}.{scheme}.*.json")):
                try:
                    d = json.load(open(f))
                except Exception:
                    continue
                if isinstance(d.get("rss_kib_per_conn"), (int, float)):
                    runs.append(d)
            if not runs:
                continue
            runs.sort(key=lambda d: d["rss_kib_per_conn"])
            mid = runs[len(runs) // 2]
            vals = " ".join(f"{d['rss_kib_per_conn']:.3f}" for d in runs)
            print(f"| {b} | {backend} | {scheme} | {mid['rss_kib_per_conn']:.2f} | {vals} | "
                  f"{mid.get('rss_before_kib', 0) / 1024:.1f} → {mid.get('rss_after_kib', 0) / 1024:.1f} |")
print(f"(raw JSON in {out})")
PY

#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against `wsd` (echo app, COMPRESSION=shared so the
# permessage-deflate cases 12.* and 13.* run too) on one I/O backend and fails on any failed case.
# Expects target/release/wsd (scripts/test builds it).
# Usage: tests/autobahn/run.sh uring|epoll [CASES [EXCLUDE]]   (JSON lists of case patterns;
# default ["*"] and [], all 517 cases). AUTOBAHN_TLS=1: over wss://, with a self-signed
# certificate made here by openssl (wstest's client takes any certificate: Twisted's
# ClientContextFactory does not verify).
set -euo pipefail
backend=${1:?usage: run.sh uring|epoll [CASES]}
cases=${2:-'["*"]'}
exclude=${3:-'[]'}
tls=${AUTOBAHN_TLS:-0}
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/autobahn"
wstest="$root/.wstest/bin/wstest"
if [ ! -x "$wstest" ]; then
  echo "autobahn: installing wstest under .wstest (one time, about a minute)"
  (cd "$root" && bash "$here/install.sh" "$root/.wstest" > /dev/null)
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
scheme=ws
name=$backend
tls_env=()
if [ "$tls" = 1 ]; then
  scheme=wss
  name=$backend-tls
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
  tls_env=(SSL_CERT="$work/cert.pem" SSL_KEY="$work/key.pem")
fi
outdir="$root/reports/autobahn-$name"
rm -rf "$outdir"
sed -e "s#ws://127.0.0.1:9001/ws#$scheme://127.0.0.1:$port/ws#" \
    -e "s#\"reports/servers\"#\"$outdir\"#" \
    -e "s#\"agent\": \"wsd\"#\"agent\": \"wsd-$name\"#" \
    -e "s#\"cases\": \[\"\*\"\]#\"cases\": $cases#" \
    -e "s#\"exclude-cases\": \[\]#\"exclude-cases\": $exclude#" \
    "$here/spec-server.json" > "$work/spec.json"

env "${tls_env[@]}" PORT=$port HOST=127.0.0.1 WSD_IO=$backend WSD_APP=echo MAX_PAYLOAD=16777216 \
  LOG_LEVEL=warn COMPRESSION=shared \
  "$root/target/release/wsd" 2> "$work/wsd.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT

health=""
for _ in $(seq 100); do
  health=$(python3 - "$port" "$scheme" "$work/cert.pem" <<'PY' 2>/dev/null || true
import ssl, sys, urllib.request
port, scheme, cert = sys.argv[1:]
if scheme == "wss":
    ctx = ssl.create_default_context(cafile=cert)
    url = f"https://127.0.0.1:{port}/health"
else:
    ctx, url = None, f"http://127.0.0.1:{port}/health"
print(urllib.request.urlopen(url, timeout=2, context=ctx).read().decode())
PY
)
  [ -n "$health" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "autobahn: wsd exited at start:"; cat "$work/wsd.log"; exit 1; }
  sleep 0.1
done
[ -n "$health" ] || { echo "autobahn: wsd did not answer /health"; cat "$work/wsd.log"; exit 1; }
want=$([ "$backend" = uring ] && echo io_uring || echo epoll)
case "$health" in
  *"\"io\":\"$want\""*) ;;
  *) echo "autobahn: wsd runs on the wrong backend: $health"; exit 1 ;;
esac

echo "autobahn: wstest fuzzingclient against wsd on $want over $scheme:// (port $port)"
if ! (cd "$work" && timeout "${AUTOBAHN_TIMEOUT:-3600}" "$wstest" -m fuzzingclient -s spec.json > wstest.log 2>&1); then
  tail -20 "$work/wstest.log"
  exit 1
fi
kill -0 "$pid" 2>/dev/null || { echo "autobahn: wsd died during the run:"; cat "$work/wsd.log"; exit 1; }
python3 "$here/check.py" "$outdir/index.json"

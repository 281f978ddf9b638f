#!/usr/bin/env bash
# Same-run A/B of two wsd binaries on echo and fan-out, with wsd-loadtest: for each repetition and
# scenario, each binary is started fresh (one worker, pinned to $SERVER_CPU) and measured with the
# load generator pinned to $LOAD_CPU; the order of the two alternates between repetitions. Prints
# one line per run and the medians of server CPU µs per operation and of the rate.
#
# Usage: A=path/to/wsd B=path/to/other/wsd bash loadtest/ab.sh
#   A, B          the two binaries (A is reported first; e.g. A = this tree, B = its base)
#   REPS=3 DURATION=5 WARMUP=1 SERVER_CPU=0 LOAD_CPU=1 OUT=DIR (raw JSON and server logs)
#   SUBS=1000     subscribers in the fan-out scenario (1: every delivery is one PUBLISH's turn)
#   SIZE=20       echo message size (16384: the large-message row)
#   SCENARIOS="echo fanout"   which scenarios to run
#   SCHEME=ws     wss: both servers serve TLS with a fresh self-signed ECDSA P-256 certificate
#   Ports 9101 (A) and 9102 (B), so it can run beside loadtest/compare.sh (9001-9009).
# Scenarios: echo 100 connections x SIZE ping-pong; fan-out 1 publisher -> 1000 subscribers of one
# topic, window 32 (compare.sh's `echo:100x20` and `fanout`).
set -u
LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LG="$LT_DIR/../target/release/wsd-loadtest"
: "${A:?A=path to the first wsd binary}" "${B:?B=path to the second wsd binary}"
REPS=${REPS:-3} DURATION=${DURATION:-5} WARMUP=${WARMUP:-1} SUBS=${SUBS:-1000}
SIZE=${SIZE:-20} SCENARIOS=${SCENARIOS:-echo fanout} SCHEME=${SCHEME:-ws}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$(mktemp -d /tmp/ab.XXXXXX)}
mkdir -p "$OUT"
[ -x "$LG" ] || { echo "build wsd-loadtest first: cargo build --release -p wsd-loadtest" >&2; exit 2; }
declare -A BIN=([A]=$A [B]=$B) PORT=([A]=9101 [B]=9102)
TLS_ENV=() TLS_ARGS=()
if [ "$SCHEME" = wss ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
  TLS_ENV=(SSL_CERT="$OUT/cert.pem" SSL_KEY="$OUT/key.pem") TLS_ARGS=(--ca "$OUT/cert.pem")
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null
jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2" | head -n1; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
declare -A OP RATE
for rep in $(seq "$REPS"); do
  if [ $((rep % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for scen in $SCENARIOS; do
    for v in $order; do
      app=echo; [ "$scen" = fanout ] && app=pubsub
      env "${TLS_ENV[@]}" PORT="${PORT[$v]}" HOST=127.0.0.1 CLUSTER_WORKERS=1 WSD_APP=$app LOG_LEVEL=warn \
        taskset -c "$SERVER_CPU" "${BIN[$v]}" >"$OUT/$v-$scen-$rep.log" 2>&1 &
      pid=$!
      for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/${PORT[$v]}") 2>/dev/null && break; sleep 0.1; done
      json="$OUT/$v-$scen-$rep.json"
      url="$SCHEME://127.0.0.1:${PORT[$v]}/ws"
      if [ "$scen" = echo ]; then
        taskset -c "$LOAD_CPU" "$LG" echo --url "$url" "${TLS_ARGS[@]}" --connections 100 --size "$SIZE" --duration "$DURATION" \
          --warmup "$WARMUP" --server-pid "$pid" --json >"$json" 2>"$OUT/$v-$scen-$rep.err"
        rc=$?
        op=$(jnum server_cpu_us_per_msg "$json") rate=$(jnum msg_per_s "$json")
      else
        taskset -c "$LOAD_CPU" "$LG" fanout --url "$url" "${TLS_ARGS[@]}" --subscribers "$SUBS" --publishers 1 --topics 1 --window 32 \
          --duration "$DURATION" --warmup "$WARMUP" --drain 5 --server-pid "$pid" --json >"$json" 2>"$OUT/$v-$scen-$rep.err"
        rc=$?
        op=$(jnum server_cpu_us_per_delivery "$json") rate=$(jnum deliveries_per_s "$json")
      fi
      kill -TERM "$pid"; wait "$pid" 2>/dev/null
      echo "rep $rep $scen $v: exit $rc, server CPU µs/op $op, rate $rate/s, other CPU $(jnum other_cpu_s "$json") s"
      OP[$v-$scen]+=" $op" RATE[$v-$scen]+=" $rate"
    done
  done
done
for scen in $SCENARIOS; do
  for v in A B; do
    echo "$scen $v (${BIN[$v]}): median server CPU µs/op $(median ${OP[$v-$scen]}), rate $(median ${RATE[$v-$scen]})/s"
  done
done
echo "raw results in $OUT"

// k6 echo scenario for users who already run k6 (wsd-loadtest `echo` is the instrument of record:
// k6 spends far more CPU per message than the servers it would measure on one machine).
//
//   k6 run -e URL=ws://127.0.0.1:3000/ws -e CONNS=100 -e SIZE=20 -e DURATION=10 loadtest/k6/echo.js
//
// CONNS virtual users each open one connection and ping-pong a SIZE-byte text message for DURATION
// seconds (one message in flight per connection, as `wsd-loadtest echo`). Metrics: ws_echoes (count
// and rate), ws_echo_rtt (ms), ws_echo_errors; thresholds fail the run on any error or no echo.
// k6/experimental/websockets runs on k6 0.4x-1.x; on k6 versions that have k6/websockets, either works.
import { WebSocket } from "k6/experimental/websockets";
import { setTimeout } from "k6/timers";
import { Counter, Trend } from "k6/metrics";

const URL = __ENV.URL || "ws://127.0.0.1:3000/ws";
const CONNS = Number(__ENV.CONNS || 100);
const SIZE = Number(__ENV.SIZE || 20);
const DURATION = Number(__ENV.DURATION || 10);

const echoes = new Counter("ws_echoes");
const errors = new Counter("ws_echo_errors");
const rtt = new Trend("ws_echo_rtt", true);

export const options = {
  scenarios: {
    echo: { executor: "per-vu-iterations", vus: CONNS, iterations: 1, maxDuration: `${DURATION + 30}s` },
  },
  thresholds: { ws_echoes: ["count>0"], ws_echo_errors: ["count==0"] },
};

const payload = "a".repeat(SIZE);

export default function () {
  const ws = new WebSocket(URL);
  let sentAt = 0;
  let open = false;
  const send = () => {
    sentAt = Date.now();
    ws.send(payload);
  };
  ws.onopen = () => {
    open = true;
    send();
    setTimeout(() => {
      open = false;
      ws.close();
    }, DURATION * 1000);
  };
  ws.onmessage = (e) => {
    if (typeof e.data !== "string" || e.data.length !== SIZE) errors.add(1);
    echoes.add(1);
    rtt.add(Date.now() - sentAt);
    if (open) send();
  };
  ws.onerror = () => errors.add(1);
}

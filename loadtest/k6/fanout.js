// k6 pub/sub fan-out scenario (PROTOCOL.md envelopes) for users who already run k6; wsd-loadtest
// `fanout` is the instrument of record (per-pair sequence accounting, server CPU per delivery).
//
//   k6 run -e URL=ws://127.0.0.1:3000/ws -e SUBS=100 -e RATE=100 -e DURATION=10 loadtest/k6/fanout.js
//
// SUBS subscribers SUBSCRIBE to topic TOPIC (with a correlationId, so the server ACKs); one publisher
// starts SETTLE seconds later and PUBLISHes {"seq":N,"ts":NANOS,"pub":0} RATE times a second for
// DURATION seconds, then {"end":N}. Each subscriber counts deliveries, duplicates and reordering,
// times publish→delivery from ts (ms resolution: Date.now), and on `end` counts what never came as
// lost. A subscriber that was not subscribed by the time publishing started loses messages: raise
// SETTLE for many subscribers.
// k6/experimental/websockets runs on k6 0.4x-1.x; on k6 versions that have k6/websockets, either works.
import { WebSocket } from "k6/experimental/websockets";
import { setInterval, clearInterval, setTimeout } from "k6/timers";
import { Counter, Trend } from "k6/metrics";

const URL = __ENV.URL || "ws://127.0.0.1:3000/ws";
const SUBS = Number(__ENV.SUBS || 100);
const RATE = Number(__ENV.RATE || 100);
const DURATION = Number(__ENV.DURATION || 10);
const SETTLE = Number(__ENV.SETTLE || 3);
const TOPIC = __ENV.TOPIC || "t0";

const deliveries = new Counter("fanout_deliveries");
const lost = new Counter("fanout_lost");
const duplicated = new Counter("fanout_duplicated");
const reordered = new Counter("fanout_reordered");
const serverErrors = new Counter("fanout_server_errors");
const subscribed = new Counter("fanout_subscribed");
const latency = new Trend("fanout_latency", true);

export const options = {
  scenarios: {
    subscribers: {
      executor: "per-vu-iterations", vus: SUBS, iterations: 1, exec: "subscriber",
      maxDuration: `${SETTLE + DURATION + 30}s`,
    },
    publisher: {
      executor: "per-vu-iterations", vus: 1, iterations: 1, exec: "publisher",
      startTime: `${SETTLE}s`, maxDuration: `${DURATION + 30}s`,
    },
  },
  thresholds: {
    fanout_deliveries: ["count>0"],
    fanout_lost: ["count==0"],
    fanout_duplicated: ["count==0"],
    fanout_server_errors: ["count==0"],
  },
};

export function subscriber() {
  const ws = new WebSocket(URL);
  const seen = new Set();
  let maxSeq = -1;
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "SUBSCRIBE", payload: { topic: TOPIC }, meta: { correlationId: `s${__VU}` } }));
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "ACK") return subscribed.add(1);
    if (m.type === "ERROR") return serverErrors.add(1);
    if (m.type !== "MESSAGE") return;
    const d = m.payload.data;
    if (d.end !== undefined) {
      lost.add(Math.max(0, d.end - seen.size));
      ws.close();
      return;
    }
    if (seen.has(d.seq)) return duplicated.add(1);
    if (d.seq < maxSeq) reordered.add(1);
    maxSeq = Math.max(maxSeq, d.seq);
    seen.add(d.seq);
    deliveries.add(1);
    latency.add(Date.now() - d.ts / 1e6);
  };
  ws.onerror = () => serverErrors.add(1);
}

export function publisher() {
  const ws = new WebSocket(URL);
  let seq = 0;
  const publish = (data) =>
    ws.send(`{"type":"PUBLISH","payload":{"topic":${JSON.stringify(TOPIC)},"data":${data}}}`);
  ws.onopen = () => {
    const perTick = Math.max(1, Math.round(RATE / 100));
    const timer = setInterval(() => {
      for (let i = 0; i < perTick; i++) {
        publish(`{"seq":${seq},"ts":${Date.now() * 1e6},"pub":0}`);
        seq++;
      }
    }, (1000 * perTick) / RATE);
    setTimeout(() => {
      clearInterval(timer);
      publish(`{"end":${seq}}`);
      setTimeout(() => ws.close(), 1000);
    }, DURATION * 1000);
  };
  ws.onmessage = (e) => {
    if (JSON.parse(e.data).type === "ERROR") serverErrors.add(1);
  };
  ws.onerror = () => serverErrors.add(1);
}

// Bun.serve peer for wsd's load comparison: echo, or the PROTOCOL.md pub/sub subset.
//
//   PORT=9004 APP=echo   bun server.js   # every message comes back (text stays text, binary binary)
//   PORT=9004 APP=pubsub bun server.js   # SUBSCRIBE / UNSUBSCRIBE / PUBLISH / PING envelopes
//
// The application is chosen at start (like wsd's WSD_APP) so the echo numbers carry no JSON cost.
// WebSocket path /ws; GET /health answers {"status":"ok"}; anything else 404.
// Settings: idleTimeout 0 (off), perMessageDeflate off (DEFLATE=shared: on, with Bun's shared compressor
// and decompressor, as uWS's SHARED_COMPRESSOR: one compression per publish), maxPayloadLength 16 MiB.
//
// Pub/sub notes:
// - PUBLISH's default (excludeSelf absent or false, PROTOCOL.md) delivers to every subscriber of the
//   topic, the publisher included: that is server.publish(). excludeSelf:true uses ws.publish(), which
//   skips the sender because publishToSelf is false.
// - The MESSAGE frame is built as a string from the publisher's own text: the `data` value is cut out of
//   the received message by a small scanner (after JSON.parse has validated the whole envelope), so it is
//   forwarded byte for byte, never re-serialized. The topic is re-encoded with JSON.stringify. One string
//   per PUBLISH, framed once by server.publish for all subscribers.
// - ACK is sent only when meta.correlationId is present; errors always (INVALID_ARGUMENT).

const port = Number(process.env.PORT ?? 9004);
const app = process.env.APP ?? "echo";
if (app !== "echo" && app !== "pubsub") {
  console.error(`APP must be echo or pubsub, not ${app}`);
  process.exit(2);
}

// Index just past the JSON value starting at i (text is known-valid JSON).
function skipValue(s, i) {
  const c = s.charCodeAt(i);
  if (c === 34) return skipString(s, i);
  if (c === 123 || c === 91) {
    let depth = 0;
    for (; i < s.length; i++) {
      const d = s.charCodeAt(i);
      if (d === 34) i = skipString(s, i) - 1;
      else if (d === 123 || d === 91) depth++;
      else if (d === 125 || d === 93) {
        if (--depth === 0) return i + 1;
      }
    }
    return i;
  }
  while (i < s.length && !",}] \t\r\n".includes(s[i])) i++;
  return i;
}

function skipString(s, i) {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92) i++;
    else if (c === 34) return i + 1;
  }
  return i;
}

function skipWs(s, i) {
  while (i < s.length && " \t\r\n".includes(s[i])) i++;
  return i;
}

// [start, end) of the value of `key` in the object starting at i, or null.
function member(s, i, key) {
  i = skipWs(s, i);
  if (s[i] !== "{") return null;
  i = skipWs(s, i + 1);
  while (i < s.length && s[i] !== "}") {
    const kEnd = skipString(s, i);
    const k = JSON.parse(s.slice(i, kEnd));
    const vStart = skipWs(s, skipWs(s, kEnd) + 1); // past ':'
    const vEnd = skipValue(s, vStart);
    if (k === key) return [vStart, vEnd];
    i = skipWs(s, vEnd);
    if (s[i] === ",") i = skipWs(s, i + 1);
  }
  return null;
}

// The raw text of envelope.payload.data, exactly as the client sent it.
function rawData(text) {
  const p = member(text, 0, "payload");
  if (!p) return null;
  const d = member(text, p[0], "data");
  return d ? text.slice(d[0], d[1]) : null;
}

function validTopic(t) {
  if (typeof t !== "string" || t.length === 0) return false;
  if (Buffer.byteLength(t) > 256) return false;
  return !/[\u0000-\u001f\u007f]/.test(t);
}

function reply(ws, type, payload, meta) {
  const env = { type, payload };
  if (meta && typeof meta.correlationId === "string") env.meta = { correlationId: meta.correlationId };
  ws.send(JSON.stringify(env));
}

function error(ws, meta, message) {
  reply(ws, "ERROR", { code: "INVALID_ARGUMENT", message, retryable: false }, meta);
}

function ack(ws, of, meta) {
  if (meta && typeof meta.correlationId === "string") reply(ws, "ACK", { of }, meta);
}

function topicsOf(payload) {
  if (payload && Array.isArray(payload.topics)) return payload.topics;
  if (payload && payload.topic !== undefined) return [payload.topic];
  return null;
}

function pubsub(ws, message) {
  const text = typeof message === "string" ? message : message.toString("utf8");
  let env;
  try {
    env = JSON.parse(text);
  } catch {
    return error(ws, undefined, "not JSON");
  }
  if (env === null || typeof env !== "object" || Array.isArray(env)) return error(ws, undefined, "not an object");
  const { type, payload, meta } = env;
  switch (type) {
    case "SUBSCRIBE":
    case "UNSUBSCRIBE": {
      const topics = topicsOf(payload);
      if (!topics || topics.length === 0 || !topics.every(validTopic)) return error(ws, meta, "bad topic");
      for (const t of topics) type === "SUBSCRIBE" ? ws.subscribe(t) : ws.unsubscribe(t);
      return ack(ws, type, meta);
    }
    case "PUBLISH": {
      if (!payload || typeof payload !== "object" || !validTopic(payload.topic)) return error(ws, meta, "bad topic");
      if (!("data" in payload)) return error(ws, meta, "missing data");
      const data = rawData(text);
      if (data === null) return error(ws, meta, "missing data");
      const frame = '{"type":"MESSAGE","payload":{"topic":' + JSON.stringify(payload.topic) + ',"data":' + data + "}}";
      if (payload.excludeSelf === true) ws.publish(payload.topic, frame);
      else server.publish(payload.topic, frame);
      return ack(ws, "PUBLISH", meta);
    }
    case "PING":
      return reply(ws, "PONG", {}, undefined);
    default:
      return error(ws, meta, "unknown type");
  }
}

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (path === "/ws") {
      if (server.upgrade(req)) return undefined;
      return new Response("bad upgrade\n", { status: 400 });
    }
    if (path === "/health") return new Response('{"status":"ok"}');
    return new Response("not found\n", { status: 404 });
  },
  websocket: {
    idleTimeout: 0,
    perMessageDeflate:
      process.env.DEFLATE === "shared" ? { compress: "shared", decompress: "shared" } : false,
    maxPayloadLength: 16 * 1024 * 1024,
    publishToSelf: false,
    message:
      app === "echo"
        ? (ws, message) => {
            ws.send(message);
          }
        : pubsub,
  },
});

console.log(`bun ${Bun.version} ${app} on ${server.hostname}:${server.port}/ws`);

// Node `ws` echo peer for wsd's load comparison: every message comes back with its type.
//
//   PORT=9005 node server.js
//
// ws's own HTTP server (noServer: false), path /ws, perMessageDeflate off, maxPayload 16 MiB.
// bufferutil / utf-8-validate are not installed: ws uses its JavaScript fallbacks.

const { WebSocketServer } = require("ws");

const port = Number(process.env.PORT ?? 9005);
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  path: "/ws",
  noServer: false,
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
});

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});

wss.on("listening", () => {
  const v = require("ws/package.json").version;
  console.log(`node ${process.version} ws ${v} echo on 127.0.0.1:${port}/ws`);
});

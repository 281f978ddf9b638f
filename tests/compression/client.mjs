// An independent permessage-deflate client for tests/compression.rs: the Node.js `ws` package
// (its own negotiation and zlib stream handling). Default client offer
// (`permessage-deflate; client_max_window_bits`), threshold 0 so it compresses everything it
// sends. Echo rounds of compressible text and binary; prints one JSON line with what it saw.
// Usage: node client.mjs PORT   (NODE_PATH must hold `ws`)
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const port = Number(process.argv[2]);
const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: { threshold: 0 } });
let answer = null;
ws.on("upgrade", (res) => { answer = res.headers["sec-websocket-extensions"] ?? null; });
const messages = [];
for (let i = 0; i < 5; i++) {
  messages.push(JSON.stringify(Array.from({ length: 60 }, (_, j) => ({ round: i, sym: `S${j}`, bid: 100 + j }))));
  messages.push(Buffer.concat([Buffer.alloc(3000, i), Buffer.from("tail")]));
  messages.push("short");
}
let next = 0, sent = 0, start = 0;
function send() {
  const m = messages[next];
  sent += typeof m === "string" ? Buffer.byteLength(m) : m.length;
  ws.send(m, { binary: typeof m !== "string" });
}
ws.on("open", () => { start = ws._socket.bytesRead; send(); });
ws.on("message", (data, isBinary) => {
  const m = messages[next];
  const same = typeof m === "string" ? (!isBinary && data.toString() === m) : (isBinary && Buffer.compare(data, m) === 0);
  if (!same) { console.log(JSON.stringify({ error: `message ${next} differs` })); process.exit(1); }
  next += 1;
  if (next < messages.length) { send(); return; }
  console.log(JSON.stringify({ answer, sent, wire: ws._socket.bytesRead - start }));
  ws.close(1000);
});
ws.on("close", () => process.exit(0));
ws.on("error", (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
setTimeout(() => { console.log(JSON.stringify({ error: "timeout" })); process.exit(1); }, 20000);

"""An independent permessage-deflate client for tests/compression.rs: the Python websockets
package (its own zlib use, its own negotiation code). Prints one JSON line with what it saw.

Usage: client.py PORT MODE
  echo      default offer (client_max_window_bits, context takeover wanted): five rounds of
            compressible text and binary, one short message; every echo must match
  narrow    offer server_max_window_bits=9 (the server must compress within 512 bytes)
  takeover  offer that explicitly keeps context takeover possible on both sides (no
            *_no_context_takeover params) with client_max_window_bits=15
  subscribe subscribe to "feed", print the first MESSAGE's data length and the bytes received
"""
import json, socket, sys
from websockets.sync.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


class Counting(socket.socket):
    """A socket that counts the bytes it receives (the compressed wire bytes)."""
    received = 0

    def recv(self, n, *args):
        data = super().recv(n, *args)
        self.received += len(data)
        return data


def sock(port):
    s = Counting(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", port))
    return s


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    factories = {
        "echo": None,
        "subscribe": None,
        "narrow": [ClientPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=True)],
        "takeover": [ClientPerMessageDeflateFactory(client_max_window_bits=15)],
    }
    s = sock(port)
    kwargs = {"sock": s, "max_size": 4 << 20, "compression": "deflate"}
    if factories[mode] is not None:
        kwargs["extensions"] = factories[mode]
    with connect(f"ws://127.0.0.1:{port}/ws", **kwargs) as ws:
        answer = ws.response.headers.get("Sec-WebSocket-Extensions")
        after_handshake = s.received
        if mode == "subscribe":
            ws.send(json.dumps({"type": "SUBSCRIBE", "payload": {"topics": ["feed"]}, "meta": {"correlationId": "s"}}))
            ack = json.loads(ws.recv(timeout=10))
            print(json.dumps({"answer": answer, "ack": ack["type"]}), flush=True)
            raw = ws.recv(timeout=20)
            msg = json.loads(raw)
            assert msg["type"] == "MESSAGE" and msg["payload"]["topic"] == "feed", raw[:100]
            print(json.dumps({"len": len(raw), "wire": s.received - after_handshake}), flush=True)
            return
        sent = 0
        for i in range(5):
            text = json.dumps([{"round": i, "sym": f"S{j:03}", "bid": 100 + j, "ask": 101 + j} for j in range(60)])
            binary = bytes(range(256)) * 20 + bytes([i])
            for message in (text, binary, "short"):
                ws.send(message)
                sent += len(message)
                echo = ws.recv(timeout=10)
                assert echo == message, f"round {i}: echo differs ({len(echo)} vs {len(message)} bytes)"
        print(json.dumps({"answer": answer, "sent": sent, "wire": s.received - after_handshake}), flush=True)


main()

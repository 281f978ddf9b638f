"""A wss:// client for tests/tls.rs, on the Python `websockets` package and the `ssl` module.

usage: wss_client.py URL CA_FILE MODE
  echo   text and a 64 KiB binary message echoed, then a clean close; prints the TLS version, the
         ALPN protocol and the SHA-256 of the server certificate
  hold   as echo without the close, prints "ready ...", waits for a line on stdin, echoes again,
         prints "again ok ..." (a connection that lives across a SIGHUP)
  pubsub subscribes to topic "t", prints "subscribed", waits for a MESSAGE, prints its data
"""

import asyncio
import hashlib
import json
import ssl
import sys

import websockets


def describe(ws):
    obj = ws.transport.get_extra_info("ssl_object")
    der = obj.getpeercert(binary_form=True)
    return f"{obj.version()} {obj.selected_alpn_protocol()} {hashlib.sha256(der).hexdigest()}"


async def echo(ws, n):
    await ws.send(f"hello {n}")
    got = await ws.recv()
    assert got == f"hello {n}", got
    big = bytes(range(256)) * 256
    await ws.send(big)
    got = await ws.recv()
    assert got == big, len(got)


async def main(url, ca, mode):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    async with websockets.connect(url, ssl=ctx, max_size=None, open_timeout=10) as ws:
        if mode == "echo":
            await echo(ws, 0)
            print("ok", describe(ws), flush=True)
        elif mode == "hold":
            await echo(ws, 0)
            print("ready", describe(ws), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            await echo(ws, 1)
            print("again ok", describe(ws), flush=True)
        elif mode == "pubsub":
            await ws.send(json.dumps({"type": "SUBSCRIBE", "payload": {"topic": "t"}, "meta": {"correlationId": "s"}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ack["type"] == "ACK", ack
            print("subscribed", flush=True)
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert msg["type"] == "MESSAGE", msg
            print("message", json.dumps(msg["payload"]["data"]), flush=True)
        else:
            raise SystemExit(f"unknown mode {mode}")


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))

#!/usr/bin/python3
"""integ_http_backend: the trivial HTTP integration backend of bench/integration.py — an
asyncio HTTP/1.1 keep-alive server that answers every Lambda proxy event with the client's
frame itself (`event.body`), which natter relays back to the client.

  integ_http_backend.py --port N      prints {"ready": true} once listening
"""
import argparse
import asyncio
import json


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    n = int(line[15:])
            body = await reader.readexactly(n) if n else b""
            out = json.loads(body)["body"].encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    srv = await asyncio.start_server(serve, "127.0.0.1", a.port, backlog=512)
    print(json.dumps({"ready": True}), flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

#!/usr/bin/python3
"""http_backend: a misbehaving-on-request HTTP/1.1 test server (keep-alive, one thread per
connection) for the HTTP client tests. Behaviour by path, for any method:

  /echo          200, the request body back (same Content-Type), X-Conn: connection number
  /headers       200, the request headers as a JSON object
  /status/N      status N, body "status N"
  /big/N         200, N bytes of "x"
  /slow/MS       the echo after MS milliseconds
  /hang          reads the request, then never answers (until the server stops)
  /garbage       answers bytes that are not HTTP, then closes
  /close         closes the connection without answering
  /stats         {"connections": accepted TCP connections, "requests": requests seen}

  http_backend.py --port N     prints {"ready": true} once listening
"""

import argparse
import http.server
import json
import socketserver
import sys
import threading
import time

STATS = {"connections": 0, "requests": 0}
LOCK = threading.Lock()
STOP = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with LOCK:
            STATS["connections"] += 1
            self.conn_no = STATS["connections"]

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Conn", str(self.conn_no))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        with LOCK:
            STATS["requests"] += 1
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path.split("?")[0].strip("/").split("/")
        if p[0] == "echo":
            self.reply(200, body, self.headers.get("Content-Type") or "text/plain")
        elif p[0] == "headers":
            self.reply(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        elif p[0] == "status":
            st = int(p[1])
            self.reply(st, ("status %d" % st).encode())
        elif p[0] == "big":
            self.reply(200, b"x" * int(p[1]))
        elif p[0] == "slow":
            time.sleep(int(p[1]) / 1000.0)
            self.reply(200, body, self.headers.get("Content-Type") or "text/plain")
        elif p[0] == "hang":
            STOP.wait(120)
            self.close_connection = True
        elif p[0] == "garbage":
            self.wfile.write(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
            self.close_connection = True
        elif p[0] == "close":
            self.close_connection = True
        elif p[0] == "stats":
            with LOCK:
                self.reply(200, json.dumps(STATS).encode(), "application/json")
        else:
            self.reply(404, b"no such path")

    do_GET = do_POST = do_PUT = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    print(json.dumps({"ready": True}), flush=True)
    try:
        srv.serve_forever()
    finally:
        STOP.set()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)

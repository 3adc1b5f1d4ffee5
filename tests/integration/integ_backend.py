"""integ_backend: an in-process HTTP backend for natter's HTTP integration tests — a real
HTTP/1.1 server (keep-alive, a thread per connection) on a free loopback port that records
every Lambda proxy event it receives and answers through a rule the test can swap.

    b = Backend(rule)          # rule(event) -> Answer | "hang" | "garbage" | "close"
    b.url                      # give to --integration-url
    b.events(route=None)       # recorded requests (parsed JSON; "<raw>" body, "<headers>")
    b.close()

Answer(status, body, ctype, delay) is a plain HTTP response; body may be a dict (JSON).
"""

import json
import socket
import socketserver
import threading
import time
import http.server

import natter_harness as nh


class Answer:
    def __init__(self, status=200, body=b"", ctype="application/json", delay=0.0):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        self.body = body.encode() if isinstance(body, str) else body
        self.ctype = ctype
        self.delay = delay


def route_of(ev):
    return ev.get("requestContext", {}).get("routeKey")


def default_rule(ev):
    return Answer(200, b"")


class Backend:
    def __init__(self, rule=default_rule, port=None):
        self._start(rule, port)

    def _start(self, rule, port):
        self.rule = rule
        self.lock = threading.Lock()
        self._events = []
        self.connections = 0
        self.socks = []
        self.stop = threading.Event()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with backend.lock:
                    backend.connections += 1
                    backend.socks.append(self.connection)

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    ev = json.loads(raw)
                except ValueError:
                    ev = {"<unparsable>": raw.decode("utf-8", "replace")}
                if not isinstance(ev, dict):
                    ev = {"<json>": ev}
                ev["<raw>"] = raw
                ev["<headers>"] = dict(self.headers.items())
                ev["<at>"] = time.monotonic()
                with backend.lock:
                    backend._events.append(ev)
                a = backend.rule(ev)
                if a == "hang":
                    backend.stop.wait(60)
                    self.close_connection = True
                    return
                if a == "garbage":
                    self.wfile.write(b"\x16\x03 definitely not HTTP\r\n\r\n")
                    self.close_connection = True
                    return
                if a == "close":
                    self.close_connection = True
                    return
                if a.delay:
                    time.sleep(a.delay)
                self.send_response(a.status)
                self.send_header("Content-Type", a.ctype)
                self.send_header("Content-Length", str(len(a.body)))
                self.end_headers()
                self.wfile.write(a.body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 512

        self.port = port or nh.free_port()
        self.server = Server((nh.HOST, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{nh.HOST}:{self.port}/invoke"

    def events(self, route=None, pred=None):
        with self.lock:
            evs = list(self._events)
        return [e for e in evs if (route is None or route_of(e) == route) and
                (pred is None or pred(e))]

    def wait_events(self, route, n=1, timeout=None, pred=None):
        return nh.wait_until(lambda: (lambda es: es if len(es) >= n else None)(
            self.events(route, pred)), timeout or nh.t(10), what=f"{n} {route} event(s)")

    def close(self):
        """Stops listening and cuts the kept-alive connections too (a real restart)."""
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sock in self.socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.socks = []

    def restart(self):
        """Starts again on the same port, keeping what was recorded."""
        events = self._events
        self._start(self.rule, self.port)
        self._events = events

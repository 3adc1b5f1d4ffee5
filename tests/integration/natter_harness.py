"""natter_harness: real processes (nats-server, redis-server, natter-node), JWTs and
WebSocket clients for the Python integration tests.

Every process is started by the harness, tracked by PID and stopped by PID (SIGTERM, then
SIGKILL) in Harness.close(), which the pytest fixture always calls. Every wait is bounded:
timeouts scale with NATTER_TEST_TIMEOUT_SCALE (default 1) for slow machines.

Written for Debian bookworm's python3 (3.11), python3-websockets 10.4 (asyncio API only)
and python3-jwt (PyJWT 2.6).
"""

import asyncio
import atexit
import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
import websockets
import websockets.exceptions

HOST = "127.0.0.1"
SCALE = float(os.environ.get("NATTER_TEST_TIMEOUT_SCALE", "1"))
FRAME_TIMEOUT = 10.0 * SCALE      # waiting for one expected frame
START_TIMEOUT = 30.0 * SCALE      # a process becoming ready
STOP_TIMEOUT = 15.0 * SCALE       # a process exiting after SIGTERM
JWT_SECRET = "natter-test-secret-0123456789abcdef0123456789abcdef"
ADMIN_TOKEN = "natter-test-admin-token"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Lines in a process log that mean a sanitizer found a bug.
SANITIZER_PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"WARNING: ThreadSanitizer|ERROR: UndefinedBehaviorSanitizer")


def t(seconds):
    """Scales a timeout for the machine's speed."""
    return seconds * SCALE


# ---------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------

_handed_out = set()


def free_port():
    """Returns a loopback TCP port that was free a moment ago and that this process has not
    handed out before (so two servers of one test never get the same port)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


def port_open(port, host=HOST, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(cond, timeout, interval=0.05, what="condition"):
    """Polls cond() until it returns a truthy value (returned) or `timeout` seconds pass
    (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(interval)


async def async_wait_until(cond, timeout, interval=0.05, what="condition"):
    """Async twin of wait_until; cond() is a plain (blocking but quick) function."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = await asyncio.to_thread(cond)
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------
# Plain HTTP
# ---------------------------------------------------------------------------------------

def http_get(url, headers=None, timeout=5.0, context=None):
    """GET `url`; returns (status, body bytes). Never raises for HTTP error statuses.
    `context`: ssl.SSLContext for https URLs."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_request(url, method="GET", body=None, headers=None, timeout=5.0, context=None):
    """Any method; returns (status, headers dict, body bytes)."""
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        headers = dict(headers or {}, **{"Content-Type": "application/json"})
    elif isinstance(body, str):
        data = body.encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def parse_metrics(text):
    """Prometheus text exposition -> {sample (name with labels): value}; comments and
    unparsable lines are skipped."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def node_metrics(node):
    """GET /metrics on `node`'s API port (must answer 200), parsed by parse_metrics."""
    st, body = node.get("/metrics", api=True)
    assert st == 200, (st, body[:200])
    return parse_metrics(body.decode())


def raw_http(port, request_bytes, host=HOST, timeout=5.0):
    """Sends `request_bytes` on a fresh TCP connection and reads the response head (and a
    Content-Length body when there is one). Returns (status, headers dict with lower-case
    names, body bytes). Used for upgrade requests the server must refuse."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request_bytes)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete HTTP response head within {timeout}s: {buf!r}")
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines or not lines[0].startswith("HTTP/1."):
            raise AssertionError(f"not an HTTP response: {buf[:200]!r}")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0") or 0)
        while len(rest) < n and time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            rest += chunk
        return status, hdrs, rest[:n] if n else rest


def upgrade_request(path, host_port, headers=None, key=None):
    """Builds the bytes of a WebSocket upgrade request."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host_port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------

def make_token(user, tenant="t1", secret=JWT_SECRET, exp_in=3600, alg="HS256",
               tenant_claim="tenant", **claims):
    """Mints a JWT with sub, tenant (or tid) and exp. exp_in=None leaves exp out."""
    payload = {"sub": user, "iat": int(time.time())}
    if tenant is not None:
        payload[tenant_claim] = tenant
    if exp_in is not None:
        payload["exp"] = int(time.time()) + exp_in
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm=alg)


def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_unsigned_token(user, tenant="t1", exp_in=3600):
    """A token with header alg "none" and an empty signature (must be refused)."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": user, "tenant": tenant,
                                  "exp": int(time.time()) + exp_in}).encode())
    return f"{header}.{payload}."


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------

_all_procs = []


@atexit.register
def _kill_leftovers():
    """Safety net when the interpreter exits without Harness.close() (e.g. interrupted):
    every process this module started and that still runs is killed by PID."""
    for p in _all_procs:
        if p.popen is not None and p.popen.poll() is None:
            try:
                os.kill(p.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Proc:
    """A child process with stdout+stderr captured to `log_path`, stopped by PID."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.popen = None
        self.returncode = None
        self.stopped_by_us = False

    def start(self):
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            log.flush()
            env = dict(os.environ)
            if self.env:
                env.update(self.env)
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True)
        self.returncode = None
        self.stopped_by_us = False
        if self not in _all_procs:
            _all_procs.append(self)
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals the process by PID and waits for it; SIGKILL after `timeout`. Returns
        (returncode, killed) where killed says whether SIGKILL was needed."""
        if self.popen is None:
            return None, False
        killed = False
        if self.popen.poll() is None:
            if not (self.stopped_by_us and sig == signal.SIGTERM):
                self.stopped_by_us = True
                try:
                    os.kill(self.popen.pid, sig)
                except ProcessLookupError:
                    pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        self.returncode = self.popen.returncode
        return self.returncode, killed

    def send_signal(self, sig):
        """Sends `sig` by PID without waiting; the exit that follows is expected."""
        self.stopped_by_us = True
        os.kill(self.popen.pid, sig)

    def kill(self):
        return self.stop(signal.SIGKILL, timeout=10)

    def log_text(self, max_bytes=60000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max_bytes))
                data = f.read()
        except OSError:
            return ""
        text = data.decode("utf-8", "replace")
        if size > max_bytes:
            text = f"[... {size - max_bytes} earlier bytes in {self.log_path}]\n" + text
        return text

    def log_lines_json(self):
        """The log's JSON lines, parsed (other lines skipped)."""
        out = []
        try:
            with open(self.log_path, "rb") as f:
                for line in f:
                    line = line.strip()
                    if line.startswith(b"{"):
                        try:
                            out.append(json.loads(line))
                        except ValueError:
                            pass
        except OSError:
            pass
        return out


class Nats(Proc):
    def __init__(self, log_path, port=None, mport=None, jetstream=None):
        self.port = port or free_port()
        self.mport = mport or free_port()
        argv = ["nats-server", "-a", HOST, "-p", str(self.port), "-m", str(self.mport)]
        if jetstream is None:
            jetstream = os.environ.get("NATTER_TEST_JETSTREAM", "1") != "0"
        if jetstream:
            # History (--history auto) uses JetStream; its store lives beside the log.
            argv += ["-js", "-sd", os.path.splitext(log_path)[0] + "-js"]
        super().__init__("nats", argv, log_path)

    @property
    def url(self):
        return f"nats://{HOST}:{self.port}"

    def wait_ready(self, timeout=START_TIMEOUT):
        def ok():
            if not self.alive():
                raise AssertionError(f"nats-server exited with {self.popen.poll()}:\n"
                                     + self.log_text(4000))
            return http_get(f"http://{HOST}:{self.mport}/healthz", timeout=1)[0] == 200
        wait_until(ok, timeout, what=f"nats-server on {self.port} to be ready")
        return self

    def _get_json(self, path, **query):
        q = urllib.parse.urlencode(query)
        status, body = http_get(f"http://{HOST}:{self.mport}{path}?{q}", timeout=2)
        if status != 200:
            raise AssertionError(f"nats monitoring {path} answered {status}")
        return json.loads(body)

    def connections(self):
        """cid -> connection info of the client connections (not the server's internal
        clients such as JetStream's)."""
        conns = self._get_json("/connz", limit="100000").get("connections") or []
        return {c["cid"]: c for c in conns}

    def subs(self, subject):
        """Subscriptions of client connections (account $G) whose subject matches the
        literal `subject`, wildcard subscriptions included, as a list of dicts (with the
        connection's name under "conn_name"). For a room subject natter.room.<t>.<r> the
        subscriptions to its live subject natter.live.room.<t>.<r> count too: with room
        history on, nodes listen there instead (docs/history.md)."""
        lst = self._get_json("/subsz", subs="1", test=subject,
                             limit="100000").get("subscriptions_list") or []
        if subject.startswith("natter.room."):
            live = "natter.live.room." + subject[len("natter.room."):]
            lst += self._get_json("/subsz", subs="1", test=live,
                                  limit="100000").get("subscriptions_list") or []
        conns = self.connections()
        out = []
        for s in lst:
            if s.get("account", "$G") != "$G" or s.get("cid") not in conns:
                continue
            s["conn_name"] = conns[s["cid"]].get("name", "")
            out.append(s)
        return out

    def sub_count(self, subject):
        return len(self.subs(subject))

    def wait_sub_count(self, subject, n, timeout=None):
        timeout = timeout or t(15)
        wait_until(lambda: self.sub_count(subject) == n, timeout,
                   what=f"{n} subscription(s) matching {subject} "
                        f"(have {self._safe_count(subject)})")

    async def await_sub_count(self, subject, n, timeout=None):
        timeout = timeout or t(15)
        try:
            await async_wait_until(lambda: self.sub_count(subject) == n, timeout)
        except AssertionError:
            raise AssertionError(
                f"timed out after {timeout:.1f}s waiting for {n} subscription(s) matching "
                f"{subject}; nats-server has {self._safe_count(subject)}: "
                f"{self._safe_subs(subject)}") from None

    def _safe_count(self, subject):
        try:
            return self.sub_count(subject)
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"

    def _safe_subs(self, subject):
        try:
            return [(s.get("subject"), s.get("cid"), s.get("conn_name"))
                    for s in self.subs(subject)]
        except Exception as e:  # noqa: BLE001
            return f"? ({e})"


class Redis(Proc):
    def __init__(self, log_path, port=None):
        self.port = port or free_port()
        super().__init__("redis", ["redis-server", "--port", str(self.port), "--bind", HOST,
                                   "--save", "", "--appendonly", "no"], log_path)

    @property
    def url(self):
        return f"redis://{HOST}:{self.port}"

    def command(self, *args, timeout=2.0):
        """Sends one RESP command and returns the raw reply bytes (enough for PING)."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as s:
            parts = [f"*{len(args)}\r\n".encode()]
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
            s.sendall(b"".join(parts))
            return s.recv(65536)

    def wait_ready(self, timeout=START_TIMEOUT):
        def ok():
            if not self.alive():
                raise AssertionError(f"redis-server exited with {self.popen.poll()}:\n"
                                     + self.log_text(4000))
            return self.command("PING").startswith(b"+PONG")
        wait_until(ok, timeout, what=f"redis-server on {self.port} to be ready")
        return self


def make_cert(directory, name="server", cn="natter-test", days=2):
    """Creates a self-signed P-256 certificate for 127.0.0.1/localhost with `openssl req`
    in `directory`; returns (cert_path, key_path). The certificate is its own CA: give
    cert_path to clients (Node(tls=...) does)."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", str(days), "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=30)
    return cert, key


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def make_ca(directory, name="ca", cn="natter test CA", days=2):
    """Creates a private P-256 certificate authority with `openssl req` in `directory`;
    returns (ca_cert_path, ca_key_path). Give ca_cert_path to whoever must trust it."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", str(days), "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_signed_cert(directory, ca, name="server", san="IP:127.0.0.1,DNS:localhost", days=2):
    """Creates a server certificate for `san` signed by `ca` = (ca_cert, ca_key) from
    make_ca; returns (cert_path, key_path)."""
    cert = os.path.join(directory, f"{name}.crt")
    key = os.path.join(directory, f"{name}.key")
    csr = os.path.join(directory, f"{name}.csr")
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", str(days), "-extfile", ext)
    return cert, key


def client_ssl_context(cafile):
    """An ssl.SSLContext trusting `cafile` (a self-signed server certificate)."""
    import ssl
    return ssl.create_default_context(cafile=cafile)


class Node(Proc):
    """A natter-node process. `port` is --listen, `api_port` is --api-listen. With
    tls=(cert, key) it gets --tls-cert/--tls-key, and its URLs, HTTP helpers and Client
    connections use https/wss trusting `cert` (the API too unless args say --api-tls off)."""

    def __init__(self, name, binary, log_path, nats=None, redis=None, args=(), env=None,
                 port=None, api_port=None, secret=JWT_SECRET, admin_token=ADMIN_TOKEN,
                 defaults=True, tls=None):
        self.port = port or free_port()
        self.api_port = api_port or free_port()
        self.nats = nats
        self.redis = redis
        self.secret = secret
        self.admin_token = admin_token
        args = list(args)
        self.tls_ca = tls[0] if tls else None
        self.ssl_context = client_ssl_context(self.tls_ca) if tls else None
        self.api_tls = bool(tls) and not ("--api-tls" in args and
                                          args[args.index("--api-tls") + 1] == "off")
        argv = [binary, "--listen", f"{HOST}:{self.port}",
                "--api-listen", f"{HOST}:{self.api_port}"]
        if tls:
            argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if defaults:
            argv += ["--node-id", name, "--jwt-secret", secret, "--admin-token", admin_token,
                     "--log-level", os.environ.get("NATTER_TEST_LOG_LEVEL", "debug"),
                     "--drain-grace", "0"]
        if nats is not None:
            argv += ["--nats", nats if isinstance(nats, str) else nats.url]
        if redis is not None:
            argv += ["--redis", redis if isinstance(redis, str) else redis.url]
        argv += list(args)
        super().__init__(name, argv, log_path, env=env)

    @property
    def clustered(self):
        return self.nats is not None and self.redis is not None

    def _ctx(self, api):
        return self.ssl_context if (self.api_tls if api else self.tls_ca) else None

    def url(self, path="/", api=False):
        scheme = "https" if self._ctx(api) else "http"
        return f"{scheme}://{HOST}:{self.api_port if api else self.port}{path}"

    def ws_url(self, token=None, path="/ws"):
        scheme = "wss" if self.tls_ca else "ws"
        if token is None:
            return f"{scheme}://{HOST}:{self.port}{path}"
        return f"{scheme}://{HOST}:{self.port}{path}?token={urllib.parse.quote(token)}"

    def token(self, user, tenant="t1", **kw):
        return make_token(user, tenant, secret=self.secret, **kw)

    def get(self, path, api=False, headers=None, timeout=5.0):
        return http_get(self.url(path, api), headers=headers, timeout=timeout,
                        context=self._ctx(api))

    def api(self, method, path, body=None, token=None, timeout=5.0):
        tok = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return http_request(self.url(path, api=True), method, body, headers, timeout,
                            context=self._ctx(True))

    def wait_ready(self, timeout=START_TIMEOUT, ready=None):
        """Waits for GET /healthz == 200 and, for a clustered node (or ready=True), for
        GET /readyz == 200. Fails at once if the process exits."""
        def check(path):
            def ok():
                if not self.alive():
                    raise _Died()
                return self.get(path, timeout=1)[0] == 200
            return ok
        try:
            wait_until(check("/healthz"), timeout, what=f"{self.name}: GET /healthz == 200")
            if ready if ready is not None else self.clustered:
                wait_until(check("/readyz"), timeout, what=f"{self.name}: GET /readyz == 200")
        except _Died:
            raise AssertionError(f"{self.name} exited with code {self.popen.poll()} while "
                                 f"starting:\n{self.log_text(6000)}") from None
        return self


class _Died(Exception):
    pass


class Harness:
    """Owns every process of one test. close() stops them all by PID and returns the list
    of problems found (sanitizer reports, unclean node exits)."""

    def __init__(self, binary, artifacts_dir):
        self.binary = binary
        self.dir = artifacts_dir
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []
        self._names = set()

    def _log(self, name):
        base, i = name, 1
        while name in self._names:
            i += 1
            name = f"{base}-{i}"
        self._names.add(name)
        return os.path.join(self.dir, f"{name}.log"), name

    def _start(self, proc):
        self.procs.append(proc)
        proc.start()
        return proc

    def nats(self, port=None, mport=None, wait=True, jetstream=None):
        log, _ = self._log("nats")
        p = self._start(Nats(log, port, mport, jetstream))
        if wait:
            p.wait_ready()
        return p

    def restart(self, proc, wait=True):
        """Starts `proc` again with the same command line (same ports) after it stopped."""
        if proc.alive():
            proc.stop()
        proc.start()
        if wait:
            proc.wait_ready()
        return proc

    def redis(self, wait=True):
        log, _ = self._log("redis")
        p = self._start(Redis(log))
        if wait:
            p.wait_ready()
        return p

    def node(self, name="node", nats=None, redis=None, args=(), env=None, wait=True,
             ready=None, **kw):
        log, name = self._log(name)
        n = self._start(Node(name, self.binary, log, nats=nats, redis=redis, args=args,
                             env=env, **kw))
        if wait:
            n.wait_ready(ready=ready)
        return n

    def cluster(self, n=2, args=(), names="ABCDEFGH"):
        """nats-server, redis-server and `n` clustered nodes. Returns (nats, redis, [nodes])."""
        nats = self.nats()
        redis = self.redis()
        nodes = [self.node(names[i], nats=nats, redis=redis, args=args, wait=False)
                 for i in range(n)]
        for node in nodes:
            node.wait_ready()
        return nats, redis, nodes

    def run_node(self, args, env=None, timeout=None, name="oneshot", defaults=True):
        """Runs natter-node expecting it to exit by itself. Returns (returncode, output).
        Fails if it is still running after `timeout` (then it is killed)."""
        timeout = timeout or t(20)
        log, name = self._log(name)
        n = self._start(Node(name, self.binary, log, args=args, env=env, defaults=defaults))
        n.stopped_by_us = True  # it is expected to exit by itself
        try:
            rc = n.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            n.kill()
            raise AssertionError(f"natter-node {' '.join(args)} still running after "
                                 f"{timeout}s; output:\n{n.log_text(4000)}") from None
        return rc, n.log_text()

    def logs(self):
        """(name, text) of every process's log, nodes first."""
        procs = sorted(self.procs, key=lambda p: 0 if isinstance(p, Node) else 1)
        return [(f"{p.name} ({p.log_path})", p.log_text()) for p in procs]

    def close(self):
        problems = []
        nodes = [p for p in self.procs if isinstance(p, Node)]
        alive_before = {id(p): p.alive() for p in self.procs}
        # Nodes first and all at once (a drain holds presence for --node-ttl), while NATS
        # and Redis are still up; then the rest.
        for p in nodes:
            if p.alive():
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in nodes + [p for p in self.procs if not isinstance(p, Node)]:
            was_alive = alive_before[id(p)]
            try:
                rc, killed = p.stop()
            except Exception as e:  # noqa: BLE001
                problems.append(f"{p.name}: could not stop pid {p.pid}: {e!r}")
                continue
            if not isinstance(p, Node):
                continue
            if not was_alive and not p.stopped_by_us and p.popen is not None:
                problems.append(f"{p.name}: died during the test (exit code "
                                f"{p.popen.returncode}); log {p.log_path}")
            if killed:
                problems.append(f"{p.name}: did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM "
                                f"(killed)")
            elif was_alive and rc not in (0, None):
                problems.append(f"{p.name}: exited with code {rc} after SIGTERM")
            text = p.log_text(200000)
            m = SANITIZER_PATTERNS.search(text)
            if m:
                start = max(0, m.start() - 200)
                problems.append(f"{p.name}: sanitizer report in {p.log_path}:\n"
                                f"{text[start:start + 6000]}")
        return problems


# ---------------------------------------------------------------------------------------
# asyncio WebSocket client (websockets 10.4)
# ---------------------------------------------------------------------------------------

def run(coro, timeout=None):
    """Runs an async test body with an overall bound."""
    timeout = timeout or t(120)

    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


class Client:
    """A JSON WebSocket client. A reader task stores every frame the server sends;
    expect() finds the first not-yet-consumed frame that matches, waiting if needed."""

    _ids = 0

    def __init__(self, ws, name):
        self.ws = ws
        self.name = name
        self.frames = []          # every parsed frame, in arrival order
        self._consumed = set()    # indexes of frames returned by expect()
        self._event = asyncio.Event()
        self.closed = False
        self.close_code = None
        self.close_reason = None
        self.welcome = None
        self._task = asyncio.create_task(self._reader())

    @classmethod
    async def connect(cls, node, user="u1", tenant="t1", token=None, name=None,
                      wait_welcome=True, headers=None, compression=None, path="/ws",
                      origin=None, query_token=True, **kw):
        """Connects to `node` (a Node, or a ws:// base URL string with the token appended)
        as `user` of `tenant`. Waits for `welcome` unless wait_welcome=False."""
        if token is None:
            token = make_token(user, tenant, secret=getattr(node, "secret", JWT_SECRET))
        hdrs = dict(headers or {})
        if isinstance(node, str):
            url = node + (("&" if "?" in node else "?") + "token=" + urllib.parse.quote(token)
                          if query_token else "")
        elif query_token:
            url = node.ws_url(token, path)
        else:
            url = node.ws_url(None, path)
        if not query_token:
            hdrs["Authorization"] = f"Bearer {token}"
        if getattr(node, "ssl_context", None) is not None and "ssl" not in kw:
            kw["ssl"] = node.ssl_context
        ws = await websockets.connect(url, extra_headers=hdrs, compression=compression,
                                      open_timeout=t(10), close_timeout=t(5), max_size=None,
                                      origin=origin, ping_interval=None, **kw)
        c = cls(ws, name or f"{user}@{getattr(node, 'name', 'url')}")
        if wait_welcome:
            c.welcome = await c.expect("welcome")
        return c

    async def _reader(self):
        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    frame = {"type": "<binary>", "raw": msg}
                else:
                    try:
                        frame = json.loads(msg)
                    except ValueError:
                        frame = {"type": "<not-json>", "raw": msg}
                    if not isinstance(frame, dict):
                        frame = {"type": "<not-object>", "raw": msg}
                self.frames.append(frame)
                self._event.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001
            self.frames.append({"type": "<reader-error>", "raw": repr(e)})
        finally:
            self.closed = True
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self._event.set()

    # ---- sending ----

    @classmethod
    def next_request_id(cls):
        cls._ids += 1
        return f"r{cls._ids}"

    async def send(self, obj):
        await self.ws.send(json.dumps(obj) if not isinstance(obj, (str, bytes)) else obj)

    async def action(self, action, request_id=True, **fields):
        """Sends {"action": action, **fields} with a fresh requestId (returned)."""
        rid = self.next_request_id() if request_id is True else request_id
        msg = {"action": action, **fields}
        if rid is not None:
            msg["requestId"] = rid
        await self.send(msg)
        return rid

    async def join(self, room, timeout=None):
        rid = await self.action("joinRoom", roomId=room)
        return await self.expect_reply(rid, "joined", timeout=timeout)

    async def leave(self, room, timeout=None):
        rid = await self.action("leaveRoom", roomId=room)
        return await self.expect_reply(rid, "left", timeout=timeout)

    async def say(self, room, message, exclude_self=None, timeout=None):
        """sendMessage; returns the ack frame."""
        fields = {"roomId": room, "message": message}
        if exclude_self is not None:
            fields["excludeSelf"] = exclude_self
        rid = await self.action("sendMessage", **fields)
        return await self.expect_reply(rid, "ack", timeout=timeout)

    async def expect_reply(self, rid, type_, timeout=None):
        """Waits for the reply to requestId `rid`: a frame of `type_` or an error (which
        fails with the error shown)."""
        f = await self.expect(None, timeout=timeout,
                              pred=lambda f: f.get("requestId") == rid and
                              f.get("type") in (type_, "error"),
                              what=f"reply {type_!r} to requestId {rid!r}")
        if f.get("type") != type_:
            raise AssertionError(f"{self.name}: expected {type_!r} for requestId {rid!r}, "
                                 f"got {f}")
        return f

    # ---- receiving ----

    def _match(self, f, type_, fields, pred):
        if type_ is not None and f.get("type") != type_:
            return False
        for k, v in fields.items():
            if f.get(k) != v:
                return False
        return pred is None or pred(f)

    def _find(self, type_, fields, pred):
        for i, f in enumerate(self.frames):
            if i not in self._consumed and self._match(f, type_, fields, pred):
                return i
        return None

    async def expect(self, type_, timeout=None, pred=None, what=None, **fields):
        """Returns (and consumes) the first unconsumed frame of type `type_` (None = any)
        whose fields equal `fields` and for which pred(frame) is true. Fails on timeout or
        when the connection closes first, listing what was received."""
        timeout = FRAME_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            i = self._find(type_, fields, pred)
            if i is not None:
                self._consumed.add(i)
                return self.frames[i]
            desc = what or f"frame type={type_!r} {fields or ''}"
            if self.closed:
                raise AssertionError(f"{self.name}: connection closed (code {self.close_code} "
                                     f"{self.close_reason!r}) while waiting for {desc}; "
                                     f"received: {self._summary()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {desc} within {timeout:.1f}s; "
                                     f"received: {self._summary()}")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def expect_error(self, code, rid=None, timeout=None):
        fields = {"code": code}
        if rid is not None:
            fields["requestId"] = rid
        return await self.expect("error", timeout=timeout, **fields)

    def received(self, type_=None, pred=None, **fields):
        """Frames received so far (consumed or not) that match."""
        return [f for f in self.frames if self._match(f, type_, fields, pred)]

    async def expect_none(self, type_, within, pred=None, **fields):
        """Fails if a matching frame is (or gets) received within `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            got = self.received(type_, pred, **fields)
            if got:
                raise AssertionError(f"{self.name}: unexpected frame(s) {got}")
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_closed(self, timeout=None):
        """Waits until the server closes the connection; returns (code, reason)."""
        timeout = FRAME_TIMEOUT if timeout is None else timeout
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.name}: connection still open after {timeout:.1f}s; "
                                 f"received: {self._summary()}") from None
        return self.close_code, self.close_reason

    async def assert_open(self):
        """Proves the connection still works: heartbeat → heartbeat reply."""
        rid = await self.action("heartbeat")
        await self.expect_reply(rid, "heartbeat")

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), t(5))
        except Exception:  # noqa: BLE001
            pass
        self._task.cancel()
        try:
            await self._task
        except BaseException:  # noqa: BLE001
            pass

    def _summary(self, limit=20):
        fs = self.frames[-limit:]
        s = json.dumps(fs, default=repr)
        if len(s) > 3000:
            s = s[:3000] + "...]"
        more = f" (last {limit} of {len(self.frames)})" if len(self.frames) > limit else ""
        return s + more


async def close_all(*clients):
    await asyncio.gather(*(c.close() for c in clients if c is not None),
                         return_exceptions=True)


# ---------------------------------------------------------------------------------------
# Raw-socket WebSocket client for hostile frames
# ---------------------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class RawWS:
    """A minimal blocking WebSocket client that writes frames by hand (mask or not, any
    opcode, fragments, bad payloads). Every read has a timeout."""

    def __init__(self, port, path, headers=None, host=HOST, timeout=None, ssl_context=None,
                 rcvbuf=None):
        """ssl_context: speak TLS (wss). rcvbuf: SO_RCVBUF set before connecting (a small
        one makes the server's socket fill up quickly when this client stops reading)."""
        self.timeout = FRAME_TIMEOUT if timeout is None else timeout
        if rcvbuf:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(self.timeout)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=self.timeout)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(upgrade_request(path, f"{host}:{port}", headers, key))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed during handshake: {buf!r}")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            raise AssertionError(f"upgrade refused: {lines[0]}")
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if self.headers.get("sec-websocket-accept") != want:
            raise AssertionError(f"bad Sec-WebSocket-Accept {self.headers}")

    @staticmethod
    def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
        """Bytes of one frame. `length` overrides the announced payload length."""
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            return head + key + payload
        return head + payload

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(self.frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text, **kw)

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("frame read timed out")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=None):
        """Returns (fin, opcode, payload bytes) of the next server frame."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        if b1 & 0x80:
            raise AssertionError("server sent a masked frame (RFC 6455 5.1 forbids it)")
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n, deadline)

    def recv_json(self, timeout=None):
        """Next text frame as JSON (control frames other than close are skipped)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_TEXT:
                return json.loads(payload)
            if op == OP_CLOSE:
                raise AssertionError(f"closed: {self._close_info(payload)}")

    @staticmethod
    def _close_info(payload):
        if len(payload) >= 2:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
        return None, ""

    def wait_close(self, timeout=None):
        """Reads until the server's close frame; returns (code, reason, frames_before).
        code is None when the server closed the TCP connection without a close frame."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        before = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no close frame within the timeout; frames: {before}")
            try:
                fin, op, payload = self.recv_frame(left)
            except (EOFError, ConnectionResetError):
                return None, "", before
            except socket.timeout:
                raise AssertionError(f"no close frame within the timeout; frames: {before}") \
                    from None
            if op == OP_CLOSE:
                code, reason = self._close_info(payload)
                try:  # answer the close like a polite client
                    self.send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
                return code, reason, before
            before.append((op, payload))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

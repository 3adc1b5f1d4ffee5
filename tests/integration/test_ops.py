"""Operations of natter-node (docs/operations.md, docs/api.md, README "Configuration"): configuration by flags and environment,
--help, SIGTERM drain, the HTTP API across nodes, /metrics, node crash and Redis restart.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse

import natter_harness as nh
from natter_harness import Client, close_all, run, t

CONTRACT_FLAGS = [
    "--listen", "--api-listen", "--nats", "--redis", "--node-id", "--jwt-secret",
    "--jwt-alg", "--jwt-public-key", "--admin-token", "--allowed-origins",
    "--max-message-bytes", "--send-queue-bytes", "--ping-interval", "--idle-timeout",
    "--drain-grace", "--static-dir", "--max-connections", "--routes", "--route-timeout",
    "--log-level", "--dev-tokens", "--default-tenant", "--tls-cert", "--tls-key",
    "--compression", "--history", "--history-recent", "--history-recent-bytes",
    "--redis-sentinel", "--redis-master",
    "--redis-sentinel-user", "--redis-sentinel-password", "--nats-creds", "--nats-nkey-seed",
    "--nats-tls-ca", "--nats-tls-cert", "--nats-tls-key",
]


def test_help_lists_every_flag(harness):
    rc, out = harness.run_node(["--help"], name="help", defaults=False)
    assert rc == 0, f"--help exited {rc}:\n{out}"
    missing = [f for f in CONTRACT_FLAGS if f not in out]
    assert not missing, f"--help does not document {missing}:\n{out}"


def test_unknown_flag_is_refused(harness):
    rc, out = harness.run_node(["--no-such-flag", "1"], name="badflag")
    assert rc != 0, out
    assert "no-such-flag" in out, out


def test_configuration_from_environment(harness):
    secret = "env-secret-0123456789abcdef0123456789abcdef"
    env = {"NATTER_JWT_SECRET": secret, "NATTER_NODE_ID": "envnode",
           "NATTER_MAX_MESSAGE_BYTES": "2048", "NATTER_LOG_LEVEL": "debug",
           "NATTER_DRAIN_GRACE": "0"}
    log, name = harness._log("envnode")
    node = nh.Node(name, harness.binary, log, env=env, defaults=False, secret=secret)
    harness._start(node)
    node.wait_ready()

    async def body():
        c = await Client.connect(node, "alice")
        try:
            await c.assert_open()
            await c.send(json.dumps({"action": "heartbeat", "pad": "x" * 3000}))
            code, _ = await c.wait_closed()
            assert code == 1009, f"NATTER_MAX_MESSAGE_BYTES=2048 not applied (close {code})"
        finally:
            await c.close()
    run(body())
    # A token signed with another secret is refused: the env secret is the one in use.
    bad = nh.make_token("alice", secret="some-other-secret-0123456789abcdef")
    st, _, _ = nh.raw_http(node.port, nh.upgrade_request("/ws?token=" + bad,
                                                         f"127.0.0.1:{node.port}"))
    assert st == 401


def test_sigterm_drains(harness):
    nats = harness.nats()
    redis = harness.redis()
    node = harness.node("A", nats=nats, redis=redis, args=["--drain-grace", "2"])
    other = harness.node("B", nats=nats, redis=redis)

    async def body():
        c = await Client.connect(node, "alice")
        watcher = await Client.connect(other, "bob")
        try:
            await c.join("d")
            await watcher.join("d")
            await nats.await_sub_count("natter.room.t1.d", 2)
            await nats.await_sub_count("natter.presence.t1.d", 2)
            t0 = time.monotonic()
            node.send_signal(signal.SIGTERM)
            await nh.async_wait_until(lambda: node.get("/readyz", timeout=1)[0] == 503,
                                      t(5), what="/readyz == 503 while draining")
            # New upgrades are refused while draining.
            st, _, _ = await asyncio.to_thread(
                nh.raw_http, node.port,
                nh.upgrade_request("/ws?token=" + node.token("late"), f"127.0.0.1:{node.port}"))
            assert st != 101, "a new upgrade was accepted while draining"
            code, _ = await c.wait_closed(timeout=t(15))
            took = time.monotonic() - t0
            assert code == 1001, f"drained clients are closed with 1001, got {code}"
            assert took >= 1.0, f"clients closed after {took:.1f}s, before the 2s grace"
            # Presence is removed cleanly: the other node sees alice go offline.
            await watcher.expect("presence", userId="alice", status="offline", timeout=t(15))
        finally:
            await close_all(c, watcher)
    run(body())
    rc = node.popen.wait(timeout=t(20))
    assert rc == 0, f"node exited {rc} after draining"


def test_http_api_requires_admin_token(cluster):
    _nats, _redis, A, _B = cluster
    for tok in ("", "wrong-token"):
        st, _, _ = A.api("POST", "/v1/tenants/t1/rooms/lobby/messages", {"message": "x"},
                         token=tok)
        want = (401,) if not tok else (401, 403)
        assert st in want, f"API with token {tok!r} answered {st}"
    st, _, _ = A.api("GET", "/@connections/nope", token="")
    assert st == 401


def test_http_api_posts_to_rooms_and_users_across_nodes(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(A, "bob")
        try:
            await alice.join("news")
            await nats.await_sub_count("natter.room.t1.news", 1)
            await nats.await_sub_count("natter.user.t1.bob", 1)
            # Posted through node B; the members are on node A.
            st, _, body_ = await asyncio.to_thread(
                B.api, "POST", "/v1/tenants/t1/rooms/news/messages",
                {"message": {"headline": "api"}})
            assert 200 <= st < 300, f"room post answered {st}: {body_!r}"
            m = await alice.expect("message", roomId="news")
            assert m["message"] == {"headline": "api"}, m
            assert isinstance(m.get("id"), str) and m["id"], m

            st, _, body_ = await asyncio.to_thread(
                B.api, "POST", "/v1/tenants/t1/users/bob/messages", {"message": "to bob"})
            assert 200 <= st < 300, f"user post answered {st}: {body_!r}"
            d = await bob.expect("direct")
            assert d["message"] == "to bob", d

            st, _, body_ = await asyncio.to_thread(
                B.api, "GET", "/v1/tenants/t1/rooms/news/presence")
            assert st == 200 and b"alice" in body_, f"presence answered {st}: {body_!r}"

            # Invalid ids and bodies are refused.
            st, _, _ = await asyncio.to_thread(
                B.api, "POST", "/v1/tenants/t1/rooms/a*b/messages", {"message": "x"})
            assert st == 400, f"invalid room id answered {st}"
            st, _, _ = await asyncio.to_thread(
                B.api, "POST", "/v1/tenants/t1/rooms/news/messages", "{not json")
            assert st == 400, f"invalid JSON body answered {st}"
        finally:
            await close_all(alice, bob)
    run(body())


def test_connections_api_across_nodes(cluster):
    _nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        try:
            cid = alice.welcome["connectionId"]
            st, _, info = await asyncio.to_thread(B.api, "GET", f"/@connections/{cid}")
            assert st == 200, f"GET /@connections/{cid} on the other node answered {st}"
            assert b"alice" in info, info

            marker = "pushed-" + cid[:8]
            st, _, _ = await asyncio.to_thread(B.api, "POST", f"/@connections/{cid}",
                                               {"type": "custom", "marker": marker})
            assert 200 <= st < 300, f"POST /@connections answered {st}"
            await alice.expect(None, pred=lambda f: marker in json.dumps(f),
                               what=f"a frame carrying {marker}")

            st, _, _ = await asyncio.to_thread(B.api, "DELETE", f"/@connections/{cid}")
            assert 200 <= st < 300, f"DELETE /@connections answered {st}"
            await alice.wait_closed(timeout=t(10))
            await nh.async_wait_until(
                lambda: B.api("GET", f"/@connections/{cid}")[0] == 410, t(10),
                what="GET of a closed connection == 410")
            st, _, _ = await asyncio.to_thread(B.api, "POST", f"/@connections/{cid}", "x")
            assert st == 410, f"POST to a closed connection answered {st}"
        finally:
            await alice.close()
    run(body())


def test_metrics_endpoint(cluster):
    _nats, _redis, A, _B = cluster
    st, body = A.get("/metrics", api=True)
    assert st == 200, st
    text = body.decode()
    samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert samples, f"no samples in /metrics:\n{text[:2000]}"
    assert any(ln.startswith("# TYPE") for ln in text.splitlines()), "no # TYPE lines"


def test_node_crash_presence_expires_on_survivors(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        try:
            await alice.join("crash")
            await bob.join("crash")
            await nats.await_sub_count("natter.presence.t1.crash", 2)
            A.kill()  # SIGKILL: no clean presence removal
            f = await bob.expect("presence", userId="alice", status="offline", timeout=t(30))
            assert f["roomId"] == "crash"
            offline = bob.received("presence", userId="alice", status="offline")
            assert len(offline) == 1, f"offline must be published exactly once: {offline}"
            rid = await bob.action("presence", roomId="crash")
            m = await bob.expect_reply(rid, "members")
            assert [x["userId"] for x in m["members"]] == ["bob"], m
        finally:
            await close_all(alice, bob)
    run(body())


def test_redis_restart_presence_is_reasserted(cluster, harness):
    nats, redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        try:
            await alice.join("r")
            await bob.join("r")
            await asyncio.to_thread(redis.stop)
            await nh.async_wait_until(lambda: A.get("/readyz", timeout=1)[0] == 503, t(15),
                                      what="A /readyz == 503 while Redis is down")
            await asyncio.to_thread(harness.restart, redis)  # empty: --save ''
            await nh.async_wait_until(lambda: A.get("/readyz", timeout=1)[0] == 200 and
                                      B.get("/readyz", timeout=1)[0] == 200, t(30),
                                      what="both nodes ready after Redis restart")

            async def members():
                rid = await bob.action("presence", roomId="r")
                m = await bob.expect_reply(rid, "members")
                return sorted(x["userId"] for x in m["members"])
            deadline = time.monotonic() + t(20)
            got = await members()
            while got != ["alice", "bob"] and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                got = await members()
            assert got == ["alice", "bob"], f"presence not re-asserted after Redis restart: {got}"
            # Chat still works.
            await nats.await_sub_count("natter.room.t1.r", 2)
            ack = await alice.say("r", "after redis")
            await bob.expect("message", id=ack["id"])
        finally:
            await close_all(alice, bob)
    run(body())


def test_natter_js_is_served_from_client_js(harness, tmp_path):
    """/natter.js is the file of --client-js (default: the client package's
    clients/js/natter.js), every other path comes from --static-dir; an empty --client-js
    serves the static directory's own natter.js; a missing file is a 404."""
    package = os.path.join(os.path.dirname(__file__), "..", "..", "clients", "js", "natter.js")
    with open(package, "rb") as f:
        want = f.read()
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>site</p>\n")
    (site / "natter.js").write_text("// the site's own copy\n")
    mine = tmp_path / "client.js"
    mine.write_text("export const X = 1;\n")

    def get(node, path):
        return nh.http_get(f"http://{nh.HOST}:{node.port}{path}")

    default = harness.node("default")
    assert get(default, "/natter.js") == (200, want)
    assert get(default, "/natter.js?v=0.1.0") == (200, want)

    custom = harness.node("custom", args=["--static-dir", str(site), "--client-js", str(mine)])
    assert get(custom, "/natter.js") == (200, b"export const X = 1;\n")
    assert get(custom, "/") == (200, b"<p>site</p>\n")
    assert get(custom, "/natter.jsx")[0] == 404

    off = harness.node("off", args=["--static-dir", str(site), "--client-js", ""])
    assert get(off, "/natter.js") == (200, b"// the site's own copy\n")

    missing = harness.node("missing", args=["--client-js", str(tmp_path / "nope.js")])
    status, body = get(missing, "/natter.js")
    assert status == 404, body


# ---------------------------------------------------------------------------------------
# Configuration that cannot work is refused at start: exit status 2 and the reason on
# stderr, before anything listens (docs/operations.md "Configuration checks").
# ---------------------------------------------------------------------------------------

def _refused(harness, args, *needles, defaults=True, env=None):
    rc, out = harness.run_node(args, name="refused", defaults=defaults, env=env)
    assert rc == 2, f"natter-node {' '.join(args)} exited {rc}, wanted 2:\n{out}"
    for n in needles:
        assert n in out, f"natter-node {' '.join(args)}: {n!r} not in the message:\n{out}"
    assert "node started" not in out and '"listening"' not in out, out
    return out


def test_refuses_short_hs_secrets(harness):
    _refused(harness, ["--jwt-secret", "short"], "JWT secret is 5 bytes",
             "HS256 needs at least 32", "openssl rand -hex 32")
    _refused(harness, ["--jwt-secret", "k" * 31], "is 31 bytes", "HS256 needs at least 32")
    _refused(harness, ["--jwt-alg", "HS384", "--jwt-secret", "k" * 47],
             "HS384 needs at least 48")
    _refused(harness, ["--jwt-alg", "HS512", "--jwt-secret", "k" * 63],
             "HS512 needs at least 64")
    # the environment form is measured the same way
    _refused(harness, [], "HS256 needs at least 32", defaults=False,
             env={"NATTER_JWT_SECRET": "tiny"})


def test_refuses_bad_nats_urls(harness):
    redis = ["--redis", "redis://127.0.0.1:6379"]
    form = "expected nats://[user:password@]host[:port] or tls://"
    _refused(harness, ["--nats", "notaurl"] + redis, "--nats 'notaurl'", "no nats:// scheme",
             form)
    _refused(harness, ["--nats", "http://127.0.0.1:4222"] + redis, "nats:// or tls://", form)
    _refused(harness, ["--nats", "nats://127.0.0.1:0"] + redis, "bad port", form)
    _refused(harness, ["--nats", "nats://127.0.0.1:65536"] + redis, "bad port", form)
    _refused(harness, ["--nats", "nats://:4222"] + redis, "no host", form)
    _refused(harness, ["--nats", "nats://a:4222,b:4222"] + redis, "'b:4222'", form)


def test_refuses_bad_redis_urls(harness):
    nats = ["--nats", "nats://127.0.0.1:4222"]
    form = "expected redis://[[user]:password@]host[:port][/db] or host:port"
    _refused(harness, nats + ["--redis", "http://x"], "--redis 'http://x'",
             "the scheme must be redis://", form)
    _refused(harness, nats + ["--redis", "rediss://h:6380"], "not supported", form)
    _refused(harness, nats + ["--redis", "notaurl"], "no port", form)
    _refused(harness, nats + ["--redis", "redis://h:99999"], "bad port", form)
    _refused(harness, nats + ["--redis", "redis://h:6379/x"], "database number", form)


def test_refuses_secret_file_with_value(harness):
    path = f"{harness.dir}/jwt-secret"
    with open(path, "w") as f:
        f.write(nh.JWT_SECRET + "\n")
    # the harness passes --jwt-secret: together with the file, refused
    _refused(harness, ["--jwt-secret-file", path], "--jwt-secret or --jwt-secret-file, not both")
    _refused(harness, ["--admin-token-file", path],
             "--admin-token or --admin-token-file, not both")
    _refused(harness, ["--jwt-secret-file", path + ".missing"], "cannot read --jwt-secret-file",
             "No such file", defaults=False)
    with open(path + ".short", "w") as f:
        f.write("short\n")
    _refused(harness, ["--jwt-secret-file", path + ".short"], "HS256 needs at least 32",
             defaults=False)


def test_refuses_unreadable_integration_ca_file(harness):
    """--integration-ca-file is checked at start: libcurl would read it only when a backend
    is called, and fail every https:// invocation then."""
    url = ["--integration-url", "https://127.0.0.1:9/x"]
    missing = f"{harness.dir}/no-such-ca.pem"
    _refused(harness, url + ["--integration-ca-file", missing], "--integration-ca-file",
             f"cannot read {missing}", "No such file")
    _refused(harness, url + ["--integration-ca-file", harness.dir], "is not a regular file")
    notpem = f"{harness.dir}/not-a-ca.pem"
    with open(notpem, "w") as f:
        f.write("just some text\n")
    _refused(harness, url + ["--integration-ca-file", notpem], "holds no PEM certificate")
    unreadable = f"{harness.dir}/unreadable-ca.pem"
    with open(unreadable, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\n")
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:  # root reads it anyway
        _refused(harness, url + ["--integration-ca-file", unreadable], "Permission denied")
    # the environment form, and for webhooks too
    _refused(harness, ["--webhook-url", "https://127.0.0.1:9/h", "--webhook-secret", "s"],
             f"cannot read {missing}", env={"NATTER_INTEGRATION_CA_FILE": missing})
    # a readable bundle starts
    cert, _key = nh.make_cert(f"{harness.dir}/ca")
    node = harness.node("ca-ok", args=url + ["--integration-ca-file", cert,
                                             "--integration-routes", "echo"])
    assert node.get("/healthz")[0] == 200


def test_secrets_from_files(harness):
    """--jwt-secret-file / NATTER_ADMIN_TOKEN_FILE as Kubernetes mounts them: the trailing
    newline is not part of the secret."""
    sec, tok = f"{harness.dir}/jwt-secret", f"{harness.dir}/admin-token"
    with open(sec, "w") as f:
        f.write(nh.JWT_SECRET + "\n")
    with open(tok, "w") as f:
        f.write(nh.ADMIN_TOKEN + "\n")
    log, name = harness._log("files")
    node = nh.Node(name, harness.binary, log, defaults=False,
                   args=["--jwt-secret-file", sec, "--drain-grace", "0"],
                   env={"NATTER_ADMIN_TOKEN_FILE": tok})
    harness._start(node)
    node.wait_ready()
    st, _, _ = node.api("GET", "/v1/tenants/t1/rooms/r/presence")
    assert st == 200, f"admin token from NATTER_ADMIN_TOKEN_FILE refused: {st}"

    async def body():
        c = await Client.connect(node, "alice")  # signed with JWT_SECRET, no newline
        await c.close()
    run(body())


def test_version_names_version_and_commit(harness):
    rc, out = harness.run_node(["--version"], name="version", defaults=False)
    assert rc == 0, out
    line = [ln for ln in out.splitlines() if ln.startswith("natter-node ")]
    assert line, out
    assert re.fullmatch(r"natter-node \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,}|unknown)\)",
                        line[-1]), line[-1]


def test_credentials_never_logged(harness):
    """A NATS user/password, a NATS token and a Redis password given in URLs appear in no
    line of the node's output: bus connected / disconnected / reconnected, errors, the
    refusal of a bad URL."""
    pw, rpw = "natsPw-hunter2", "redisPw-swordfish"
    log, _ = harness._log("nats")
    nats = nh.Nats(log)
    nats.argv += ["--user", "natter", "--pass", pw]
    harness._start(nats).wait_ready()
    log, _ = harness._log("redis")
    redis = nh.Redis(log)
    redis.argv += ["--requirepass", rpw]
    harness._start(redis)
    nh.wait_until(lambda: redis.command("AUTH", rpw).startswith(b"+OK"), t(20),
                  what="redis with a password")
    nurl = f"nats://natter:{pw}@127.0.0.1:{nats.port}"
    rurl = f"redis://:{rpw}@127.0.0.1:{redis.port}"
    node = harness.node("A", nats=nurl, redis=rurl)  # ready: both passwords worked
    harness.restart(nats)  # bus disconnected, then reconnected
    nh.wait_until(lambda: any(ln.get("msg") == "bus reconnected" for ln in node.log_lines_json()),
                  t(30), what="bus reconnected after the NATS restart")
    node.wait_ready()
    rc, refused = harness.run_node(["--nats", f"nats://natter:{pw}@127.0.0.1:99999",
                                    "--redis", rurl], name="badport")
    assert rc == 2, refused
    def output(text):  # without the harness's own "=== start <command line>" lines
        return "\n".join(ln for ln in text.splitlines() if not ln.startswith("=== start"))
    text, refused = output(node.log_text(400000)), output(refused)
    for secret in (pw, rpw):
        assert secret not in text, f"{secret} in the node's log:\n{text[-3000:]}"
        assert secret not in refused, refused
    urls = [ln.get("url") for ln in node.log_lines_json()
            if ln.get("msg") in ("bus connected", "bus reconnected", "bus disconnected")
            and ln.get("url")]
    assert urls, f"no bus state line with a url:\n{text[-3000:]}"
    assert all(u == f"nats://natter:***@127.0.0.1:{nats.port}" for u in urls), urls
    assert "nats://natter:***@127.0.0.1:99999" in refused, refused
    # a token in the URL is redacted as a whole
    rc, refused = harness.run_node(["--nats", "nats://tok-s3cr3t@127.0.0.1:0",
                                    "--redis", rurl], name="token")
    refused = output(refused)
    assert rc == 2 and "tok-s3cr3t" not in refused and "nats://***@127.0.0.1:0" in refused, \
        refused


def test_metrics_pass_promtool(cluster):
    """/metrics of a clustered node after some traffic (chat, API calls, custom and
    unknown routes, a refused upgrade) passes `promtool check metrics` without a single
    remark, and carries the process_* families and the build info."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not on PATH (Debian package prometheus; scripts/install-deps.sh)"
    _nats, _redis, A, B = cluster

    async def body():
        a = await Client.connect(A, "alice")
        b = await Client.connect(B, "bob")
        try:
            await a.join("r")
            await b.join("r")
            ack = await a.say("r", "hello")
            await b.expect("message", id=ack["id"])
            for action in ("noBackend", 'quo"te\\', "café", "x" * 80):
                rid = await a.action(action)
                await a.expect_error("unknown_action", rid)
        finally:
            await close_all(a, b)
    run(body())
    A.api("GET", "/v1/tenants/t1/rooms/r/presence")
    A.api("GET", "/v1/tenants/t1/rooms/r/presence", token="wrong")
    nh.raw_http(A.port, nh.upgrade_request("/ws?token=bad", f"127.0.0.1:{A.port}"))
    st, body_ = A.get("/metrics", api=True)
    assert st == 200
    text = body_.decode()
    p = subprocess.run([promtool, "check", "metrics"], input=body_, capture_output=True,
                       timeout=t(30))
    remarks = (p.stdout + p.stderr).decode().strip()
    assert p.returncode == 0 and not remarks, \
        f"promtool check metrics (exit {p.returncode}):\n{remarks}"
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, typ in (("process_cpu_seconds_total", "counter"),
                      ("process_resident_memory_bytes", "gauge"),
                      ("process_virtual_memory_bytes", "gauge"),
                      ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
                      ("process_start_time_seconds", "gauge"),
                      ("natter_build_info", "gauge"),
                      ("natter_route_requests_total", "counter")):
        assert types.get(name) == typ, f"{name}: type {types.get(name)}, wanted {typ}"
    m = nh.parse_metrics(text)
    assert m["process_resident_memory_bytes"] > 1 << 20
    assert 10 < m["process_open_fds"] <= m["process_max_fds"]
    assert abs(m["process_start_time_seconds"] - time.time()) < 3600
    info = [k for k in m if k.startswith("natter_build_info{")]
    assert len(info) == 1 and m[info[0]] == 1, info
    assert re.fullmatch(r'natter_build_info\{version="\d+\.\d+\.\d+",commit="([0-9a-f]{7,}|'
                        r'unknown)"\}', info[0]), info[0]
    assert m['natter_route_unknown_total{route="noBackend"}'] == 1
    # not [A-Za-z0-9_-] or longer than 64 bytes: no label of their own
    assert m['natter_route_unknown_total{route="other"}'] == 3


# ---------------------------------------------------------------------------------------
# Logs for operations (docs/operations.md "Logs")
# ---------------------------------------------------------------------------------------

def _lines(node, msg):
    return [ln for ln in node.log_lines_json() if ln.get("msg") == msg]


def test_api_access_lines(harness):
    node = harness.node("A", args=["--log-level", "info"])
    node.api("GET", "/v1/tenants/acme/rooms/lobby/presence")
    node.api("POST", "/v1/tenants/acme/rooms/lobby/messages", {"message": "hi"})
    node.api("GET", "/@connections/someConnId")
    node.api("GET", "/v1/tenants/acme/rooms/lobby/presence", token="not-the-admin-token")
    node.api("GET", "/v1/tenants/acme/rooms/lobby/presence", token="")
    node.get("/metrics", api=True)
    node.get("/no/such/thing", api=True)

    def access():
        return _lines(node, "api request")
    nh.wait_until(lambda: len(access()) >= 4, t(10), what="4 access lines")
    got = [(ln["method"], ln["route"], ln["status"], ln["caller"]) for ln in access()]
    assert got[:3] == [
        ("GET", "/v1/tenants/{tenant}/rooms/{room}/presence", 200, "admin"),
        ("POST", "/v1/tenants/{tenant}/rooms/{room}/messages", 202, "admin"),
        ("GET", "/@connections/{connectionId}", 410, "admin")], got
    assert ("GET", "/metrics", 200, "anonymous") in got, got
    assert len(got) == 4, got
    for ln in access():
        assert ln["level"] == "info" and isinstance(ln["ms"], (int, float)) and \
            0 <= ln["ms"] < 10000 and ln["peer"] == "127.0.0.1", ln
    # never the raw path: ids stay out of access lines
    text = "\n".join(json.dumps(ln) for ln in access())
    assert "acme" not in text and "lobby" not in text and "someConnId" not in text, text
    failed = _lines(node, "api auth failed")
    # a path that needs the token is refused before it is routed: unmatched, 401
    assert [(ln["level"], ln["status"], ln["caller"], ln["route"]) for ln in failed] == \
        [("warn", 403, "token", "/v1/tenants/{tenant}/rooms/{room}/presence"),
         ("warn", 401, "anonymous", "/v1/tenants/{tenant}/rooms/{room}/presence"),
         ("warn", 401, "anonymous", "unmatched")], failed


def test_refusals_logged_at_warn_and_rate_limited(harness):
    """A flood of wrong admin tokens and of refused upgrades leaves at most the burst
    (20 lines per kind) plus one "log lines suppressed" line per kind and 10 s, which
    counts every line held back."""
    node = harness.node("A", args=["--log-level", "info"])
    flood = 150
    for _ in range(flood):
        node.api("GET", "/v1/tenants/t1/rooms/r/presence", token="wrong")
    for _ in range(flood):
        st, _, _ = nh.raw_http(node.port, nh.upgrade_request("/ws?token=bad",
                                                            f"127.0.0.1:{node.port}"))
        assert st == 401
    st, _, _ = nh.raw_http(node.port, nh.upgrade_request("/ws", f"127.0.0.1:{node.port}",
                                                        headers={"Sec-WebSocket-Version": "8"}))
    assert st == 426

    def summary(kind):
        return sum(ln["suppressed"] for ln in _lines(node, "log lines suppressed")
                   if ln["kind"] == kind)

    for kind in ("api auth failed", "upgrade refused"):
        lines = _lines(node, kind)
        assert all(ln["level"] == "warn" for ln in lines), lines[:3]
        # 20 at once, then 1 a second for as long as the flood lasted
        assert 20 <= len(lines) < 20 + t(40), (kind, len(lines))
    nh.wait_until(lambda: summary("api auth failed") + len(_lines(node, "api auth failed"))
                  == flood and summary("upgrade refused") +
                  len(_lines(node, "upgrade refused")) == flood + 1,
                  t(25), what="summaries counting every suppressed line")
    refused = _lines(node, "upgrade refused")
    assert refused[0]["status"] == 401 and refused[0]["reason"] == "malformed" and \
        refused[0]["peer"] == "127.0.0.1", refused[0]
    assert all(ln["level"] == "warn" for ln in _lines(node, "log lines suppressed"))
    # the node still answers and logs normally
    st, _, _ = node.api("GET", "/v1/tenants/t1/rooms/r/presence")
    assert st == 200


def test_connection_lines_at_debug(harness):
    node = harness.node("A", args=["--log-level", "debug"])
    quiet = harness.node("B", args=["--log-level", "info"])

    async def body():
        for n in (node, quiet):
            c = await Client.connect(n, "alice", tenant="acme")
            cid = c.welcome["connectionId"]
            await c.close()
        return cid
    run(body())
    nh.wait_until(lambda: _lines(node, "connection closed"), t(10), what="connection closed")
    op, cl = _lines(node, "connection open"), _lines(node, "connection closed")
    assert len(op) == 1 and len(cl) == 1, (op, cl)
    assert op[0]["level"] == "debug" and op[0]["user"] == "alice" and \
        op[0]["tenant"] == "acme" and op[0]["peer"] == "127.0.0.1" and op[0]["conn"], op
    assert cl[0]["conn"] == op[0]["conn"] and cl[0]["reason"] == "client" and \
        0 <= cl[0]["s"] < t(30), cl
    assert not _lines(quiet, "connection open") and not _lines(quiet, "connection closed")


def test_dev_token_json_escapes_ids(harness):
    """/dev/token builds its JSON with jansson: a user id holding '"' and '\\' (valid ids)
    gives valid JSON whose token carries that very id."""
    node = harness.node("A", args=["--dev-tokens", "on"])
    user = 'say"hi\\there'
    st, body = node.get("/dev/token?user=" + urllib.parse.quote(user) + "&tenant=t%22x")
    assert st == 200, body
    doc = json.loads(body)
    assert doc["userId"] == user and doc["tenantId"] == 't"x' and doc["expiresIn"] == 3600, doc

    async def body_():
        c = await Client.connect(node, token=doc["token"])
        try:
            assert c.welcome["userId"] == user and c.welcome["tenantId"] == 't"x', c.welcome
        finally:
            await c.close()
    run(body_())

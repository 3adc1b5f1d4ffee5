"""Operations of natter-node (DESIGN §5, §6): configuration by flags and environment,
--help, SIGTERM drain, the HTTP API across nodes, /metrics, node crash and Redis restart.
"""

import asyncio
import json
import os
import signal
import time

import natter_harness as nh
from natter_harness import Client, close_all, run, t

CONTRACT_FLAGS = [
    "--listen", "--api-listen", "--nats", "--redis", "--node-id", "--jwt-secret",
    "--jwt-alg", "--jwt-public-key", "--admin-token", "--allowed-origins",
    "--max-message-bytes", "--send-queue-bytes", "--ping-interval", "--idle-timeout",
    "--drain-grace", "--static-dir", "--max-connections", "--routes", "--route-timeout",
    "--log-level", "--dev-tokens", "--default-tenant", "--tls-cert", "--tls-key",
    "--compression", "--history", "--redis-sentinel", "--redis-master",
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

"""HTTP API, backend integration and observability (issue 4) on a real two-node cluster:
/@connections across nodes, admin token, server push, presence, keep-alive, custom routes
answered by a backend process, lifecycle events (including a kill -9'd node's connections,
reaped by the survivor), the external authorizer, /metrics.

NATS is spoken by natter_nats (a small asyncio client); the backend is route_backend.py,
run as its own process.
"""

import asyncio
import datetime
import json
import os
import socket
import sys
import time

import natter_harness as nh
import natter_nats as nn
from natter_harness import Client, close_all, run, t

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "route_backend.py")


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

async def api(node, method, path, body=None, token=None, headers=None):
    """API call off the event loop (WebSocket readers keep running). Returns
    (status, headers, parsed JSON or raw bytes)."""
    tok = node.admin_token if token is None else token
    hdrs = dict(headers or {})
    if tok:
        hdrs["Authorization"] = f"Bearer {tok}"
    st, hd, raw = await asyncio.to_thread(nh.http_request, node.url(path, api=True), method,
                                          body, hdrs)
    ctype = {k.lower(): v for k, v in hd.items()}.get("content-type", "")
    if ctype.startswith("application/json"):
        return st, hd, json.loads(raw)
    return st, hd, raw


def api_sync(node, method, path, body=None, token=None):
    tok = node.admin_token if token is None else token
    hdrs = {"Authorization": f"Bearer {tok}"} if tok else {}
    st, hd, raw = nh.http_request(node.url(path, api=True), method, body, hdrs)
    return st, hd, raw


def assert_json_error(status, body, want_status, code=None):
    assert status == want_status, f"expected {want_status}, got {status}: {body!r}"
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and \
        isinstance(body.get("message"), str), f"errors are JSON {{error, message}}: {body!r}"
    if code:
        assert body["error"] == code, body


def metrics(node):
    st, body = node.get("/metrics", api=True)
    assert st == 200, st
    out, types = {}, {}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        name, _, val = line.rpartition(" ")
        out[name] = float(val)
    assert types.get("natter_connections") == "gauge", types
    assert types.get("natter_delivery_latency_seconds") == "histogram", types
    return out


def start_backend(harness, nats, *args, name="backend"):
    log, name = harness._log(name)
    p = harness._start(nh.Proc(name, [sys.executable, BACKEND, "--nats", nats.url, *args],
                               log))

    def ready():
        if not p.alive():
            raise AssertionError(f"backend exited:\n{p.log_text(4000)}")
        return any(r.get("ready") for r in p.log_lines_json())
    nh.wait_until(ready, t(15), what="backend ready")
    return p


def read_responses(sock, n, timeout):
    """Reads `n` HTTP responses (Content-Length bodies) from a socket; returns a list of
    (status, headers, body) and whether the server closed the connection afterwards."""
    sock.settimeout(timeout)
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    closed = False
    while len(out) < n or not closed:
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            lines = buf[:head_end].decode("latin-1").split("\r\n")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in
                    (line.partition(":") for line in lines[1:])}
            clen = int(hdrs.get("content-length", "0"))
            if len(buf) < head_end + 4 + clen:
                break
            body = buf[head_end + 4:head_end + 4 + clen]
            buf = buf[head_end + 4 + clen:]
            out.append((int(lines[0].split(" ", 2)[1]), hdrs, body))
        if len(out) >= n and out[-1][1].get("connection") != "close":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(out)} of {n} responses: {out} {buf!r}")
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            closed = True
            break
        buf += chunk
    return out, closed


# ---------------------------------------------------------------------------------------
# admin token
# ---------------------------------------------------------------------------------------

def test_admin_token_401_403_and_public_operations(cluster):
    _nats, _redis, A, _B = cluster

    async def body():
        for path, method in (("/@connections/abc", "GET"), ("/@connections/abc", "DELETE"),
                             ("/v1/tenants/t1/rooms/r/presence", "GET"),
                             ("/v1/tenants/t1/rooms/r/messages", "POST"),
                             ("/no/such/path", "GET")):
            st, hd, b = await api(A, method, path, body={"message": 1}
                                  if method == "POST" else None, token="")
            assert_json_error(st, b, 401, "unauthorized")
            assert "bearer" in {k.lower(): v for k, v in hd.items()}.get(
                "www-authenticate", "").lower(), hd
            st, _, b = await api(A, method, path, body={"message": 1}
                                 if method == "POST" else None, token="wrong-token")
            assert_json_error(st, b, 403, "forbidden")
        st, _, b = await api(A, "GET", "/@connections/abc",
                             headers={"Authorization": "Basic YWRtaW46eA=="}, token="")
        assert_json_error(st, b, 401)
        # A prefix of the real token is wrong, not missing.
        st, _, b = await api(A, "GET", "/@connections/abc", token=A.admin_token[:-1])
        assert_json_error(st, b, 403)
        st, _, b = await api(A, "GET", "/@connections/abc")
        assert_json_error(st, b, 410, "gone")
        st, _, b = await api(A, "GET", "/no/such/path")
        assert_json_error(st, b, 404, "not_found")
        # Probes and scrapers need no token.
        st, _, b = await api(A, "GET", "/healthz", token="")
        assert st == 200 and b == {"status": "ok"}, (st, b)
        st, _, b = await api(A, "GET", "/readyz", token="")
        assert st == 200 and b["ready"] is True and b["bus"] and b["store"], (st, b)
        st, _, b = await api(A, "GET", "/metrics", token="")
        assert st == 200 and b"natter_connections" in b
    run(body())


def test_api_disabled_without_admin_token(harness):
    node = harness.node("solo", admin_token="")

    async def body():
        for tok in ("", "anything"):
            st, _, b = await api(node, "GET", "/@connections/abc", token=tok)
            assert_json_error(st, b, 403, "api_disabled")
            st, _, b = await api(node, "POST", "/v1/tenants/t1/rooms/r/messages",
                                 body={"message": 1}, token=tok)
            assert_json_error(st, b, 403, "api_disabled")
        st, _, b = await api(node, "GET", "/healthz", token="")
        assert st == 200, (st, b)
        st, _, b = await api(node, "GET", "/metrics", token="")
        assert st == 200, (st, b)
    run(body())


# ---------------------------------------------------------------------------------------
# /@connections
# ---------------------------------------------------------------------------------------

def test_connection_push_get_delete_across_nodes(cluster):
    _nats, _redis, A, B = cluster

    async def body():
        bob = await Client.connect(B, "bob")
        cid = bob.welcome["connectionId"]
        try:
            # Push through A's API to a connection on B: text (valid UTF-8) and binary.
            st, _, b = await api(A, "POST", f"/@connections/{cid}",
                                 body=json.dumps({"type": "custom", "n": 1, "s": "é✓"}))
            assert st == 200, (st, b)
            f = await bob.expect("custom", n=1)
            assert f["s"] == "é✓", f
            st, _, b = await api(A, "POST", f"/@connections/{cid}", body=b"\xff\x00\x01raw")
            assert st == 200, (st, b)
            f = await bob.expect("<binary>")
            assert f["raw"] == b"\xff\x00\x01raw", f
            # Local push (B's own API) takes the direct path; same result.
            st, _, b = await api(B, "POST", f"/@connections/{cid}", body="plain text")
            assert st == 200, (st, b)
            f = await bob.expect("<not-json>")
            assert f["raw"] == "plain text"
            await bob.join("room-x")

            for node in (A, B):
                st, _, info = await api(node, "GET", f"/@connections/{cid}")
                assert st == 200, (st, info)
                assert info["connectionId"] == cid and info["userId"] == "bob" and \
                    info["tenantId"] == "t1" and info["node"] == "B", info
                assert info["identity"]["sourceIp"] == "127.0.0.1", info
                assert "websockets" in (info["identity"]["userAgent"] or ""), info
                assert isinstance(info["connectedAtMs"], int) and \
                    abs(info["connectedAtMs"] - now_ms()) < 60_000, info
                assert info["lastActiveAtMs"] >= info["connectedAtMs"], info
                # the gateway's shape: RFC 3339 strings of the same instants
                for k in ("connectedAt", "lastActiveAt"):
                    ts = datetime.datetime.strptime(info[k], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                        tzinfo=datetime.timezone.utc).timestamp()
                    assert abs(ts * 1000 - info[k + "Ms"]) < 1, info
                assert info.get("rooms") == ["room-x"], info

            # DELETE through A: 204, the client is closed normally.
            st, _, b = await api(A, "DELETE", f"/@connections/{cid}")
            assert st == 204 and b == b"", (st, b)
            code, _reason = await bob.wait_closed(t(10))
            assert code == 1000, code

            # Gone everywhere, for every method, once the registry forgot it.
            async def all_gone():
                for node in (A, B):
                    for method, data in (("GET", None), ("POST", "x"), ("DELETE", None)):
                        st, _, b = await api(node, method, f"/@connections/{cid}", body=data)
                        if st != 410:
                            return False
                        assert_json_error(st, b, 410, "gone")
                return True
            deadline = time.monotonic() + t(10)
            while not await all_gone():
                assert time.monotonic() < deadline, "connection not gone after DELETE"
                await asyncio.sleep(0.1)
        finally:
            await close_all(bob)
    run(body())


def test_connection_push_limits_and_bad_ids(cluster):
    _nats, _redis, A, B = cluster

    async def body():
        bob = await Client.connect(B, "bob")
        cid = bob.welcome["connectionId"]
        try:
            # 413 over --max-message-bytes (default 65536), decided from Content-Length.
            with socket.create_connection((nh.HOST, A.api_port), timeout=t(5)) as s:
                s.sendall((f"POST /@connections/{cid} HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {A.admin_token}\r\n"
                           f"Content-Length: 65537\r\n\r\n").encode())
                (resp,), closed = read_responses(s, 1, t(5))
            assert resp[0] == 413, resp
            assert json.loads(resp[2])["error"] == "too_large", resp
            assert resp[1].get("connection") == "close"
            # At the limit it is delivered.
            prefix = '{"type":"big","pad":"'
            data = prefix + "x" * (65536 - len(prefix) - 2) + '"}'
            assert len(data) == 65536
            st, _, b = await api(A, "POST", f"/@connections/{cid}", body=data)
            assert st == 200, (st, b)
            f = await bob.expect("big")
            assert len(f["pad"]) == 65536 - len(prefix) - 2
            # Empty body, invalid ids.
            st, _, b = await api(A, "POST", f"/@connections/{cid}", body=b"")
            assert_json_error(st, b, 400, "bad_request")
            for bad in ("a.b", "a*", "%3E", "a%20b", "x" * 129):
                st, _, b = await api(A, "GET", f"/@connections/{bad}")
                assert_json_error(st, b, 400, "bad_request")
            st, _, b = await api(A, "PUT", f"/@connections/{cid}", body="x")
            assert_json_error(st, b, 405)
            await bob.assert_open()
        finally:
            await close_all(bob)
    run(body())


def test_keep_alive_and_pipelining(cluster):
    _nats, _redis, A, B = cluster

    async def body():
        bob = await Client.connect(B, "bob")
        cid = bob.welcome["connectionId"]
        auth = f"Authorization: Bearer {A.admin_token}\r\n"
        push = json.dumps({"message": {"k": "pipelined"}})
        reqs = (f"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                # answered after a registry lookup and a NATS round trip to node B
                f"GET /@connections/{cid} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
                f"POST /v1/tenants/t1/users/bob/messages HTTP/1.1\r\nHost: x\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(push)}\r\n\r\n{push}"
                f"GET /@connections/nope HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
                f"DELETE /@connections/{cid} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
                f"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()

        def exchange():
            with socket.create_connection((nh.HOST, A.api_port), timeout=t(10)) as s:
                s.sendall(reqs)
                return read_responses(s, 6, t(15))
        try:
            out, closed = await asyncio.to_thread(exchange)
            assert [r[0] for r in out] == [200, 200, 202, 410, 204, 200], \
                [(r[0], r[2][:80]) for r in out]
            assert json.loads(out[1][2])["connectionId"] == cid
            assert all(r[1]["connection"] == "keep-alive" for r in out[:5]), out
            assert out[5][1]["connection"] == "close" and closed
            await bob.expect("direct", pred=lambda f: f["message"] == {"k": "pipelined"})
            await bob.wait_closed(t(10))
        finally:
            await close_all(bob)

        # Several requests on one connection, sent one after the other (http.client).
        def sequential():
            import http.client
            c = http.client.HTTPConnection(nh.HOST, A.api_port, timeout=t(5))
            socks = set()
            for i in range(5):
                c.request("GET", "/@connections/none" if i % 2 else "/healthz",
                          headers={"Authorization": f"Bearer {A.admin_token}"})
                r = c.getresponse()
                r.read()
                assert r.status == (410 if i % 2 else 200), r.status
                socks.add(id(c.sock))
            c.close()
            return socks
        assert len(await asyncio.to_thread(sequential)) == 1, "connection was not kept alive"
    run(body())


# ---------------------------------------------------------------------------------------
# server push and presence
# ---------------------------------------------------------------------------------------

def test_room_push_with_history_off_answers_its_id(harness):
    """History off: the push is answered at once (202 with the message id, nothing to wait
    for) and the member gets that id — the answer is built before the request's state is
    freed (a use after free fuzz_api_http found)."""
    nats, redis = harness.nats(), harness.redis()
    node = harness.node("A", nats=nats, redis=redis, args=["--history", "off"])

    async def body():
        alice = await Client.connect(node, "alice")
        try:
            await alice.join("news")
            for given in (None, "push-1"):
                req = {"message": {"n": 1}}
                if given:
                    req["id"] = given
                st, _, b = await api(node, "POST", "/v1/tenants/t1/rooms/news/messages",
                                     body=req)
                assert st == 202 and isinstance(b.get("id"), str) and b["id"], (st, b)
                assert given is None or b["id"] == given, b
                m = await alice.expect("message", id=b["id"])
                assert "seq" not in m, m
        finally:
            await close_all(alice)

    run(body())


def test_room_and_user_push_reach_members_on_both_nodes(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        alice2 = await Client.connect(B, "alice", name="alice-tab2")
        bob = await Client.connect(B, "bob")
        try:
            await alice.join("news")
            await bob.join("news")
            await nats.await_sub_count("natter.room.t1.news", 2)
            payload = {"headline": "déjà vu", "n": [1, 2.5, None, True]}
            st, _, b = await api(B, "POST", "/v1/tenants/t1/rooms/news/messages",
                                 body={"message": payload})
            assert st == 202 and isinstance(b.get("id"), str) and b["id"], (st, b)
            for c in (alice, bob):
                m = await c.expect("message", id=b["id"])
                assert m["roomId"] == "news" and m["message"] == payload, m
                assert m["userId"] is None and m["server"] is True, m
                assert abs(m["timestamp"] - now_ms()) < 60_000
            assert not alice2.received("message", id=b["id"]), "non-member got a room push"

            await nats.await_sub_count("natter.user.t1.alice", 2)
            st, _, b = await api(A, "POST", "/v1/tenants/t1/users/alice/messages",
                                 body={"message": "psst"})
            assert st == 202, (st, b)
            for c in (alice, alice2):
                d = await c.expect("direct", id=b["id"])
                assert d["message"] == "psst" and d["userId"] is None and d["server"] is True
            await bob.expect_none("direct", 0.3, id=b["id"])

            # Other tenants do not see it (the tenant comes from the path).
            st, _, b = await api(A, "POST", "/v1/tenants/t2/rooms/news/messages",
                                 body={"message": "other tenant"})
            assert st == 202
            await alice.expect_none("message", 0.3, id=b["id"])

            st, _, p = await api(A, "GET", "/v1/tenants/t1/rooms/news/presence")
            assert st == 200 and p["roomId"] == "news", (st, p)
            assert sorted(m["userId"] for m in p["members"]) == ["alice", "bob"], p
            st, _, p = await api(B, "GET", "/v1/tenants/t1/rooms/empty/presence")
            assert st == 200 and p["members"] == [], p

            for bad in (b"not json", b"[1,2]", b"{\"msg\": 1}", b""):
                st, _, e = await api(A, "POST", "/v1/tenants/t1/rooms/news/messages", body=bad)
                assert_json_error(st, e, 400, "bad_request")
            for path in ("/v1/tenants/a.b/rooms/news/messages",
                         "/v1/tenants/t1/rooms/a%2A/messages",
                         "/v1/tenants/t1/users/%20/messages"):
                st, _, e = await api(A, "POST", path, body={"message": 1})
                assert_json_error(st, e, 400, "bad_request")
        finally:
            await close_all(alice, alice2, bob)
    run(body())


# ---------------------------------------------------------------------------------------
# custom routes
# ---------------------------------------------------------------------------------------

def test_custom_route_backend_unknown_and_timeout(harness):
    nats, _redis, (A, B) = harness.cluster(2, args=["--route-timeout", "1"])
    backend = start_backend(harness, nats, "--route", "echo", "--route", "slowpoke",
                            "--delay", "3")

    async def body():
        alice = await Client.connect(B, "alice")
        try:
            await alice.send({"action": "echo", "requestId": "q1", "x": [1, "é"]})
            r = await alice.expect("reply", requestId="q1")
            assert r["action"] == "echo", r
            d = r["data"]
            assert d["echo"] == {"action": "echo", "requestId": "q1", "x": [1, "é"]}, d
            assert d["user"] == "alice" and d["tenant"] == "t1" and \
                d["conn"] == alice.welcome["connectionId"], d

            await alice.send({"action": "nobodyHome", "requestId": "q2"})
            e = await alice.expect("error", requestId="q2")
            assert e["code"] == "unknown_action", e

            t0 = time.monotonic()
            await alice.send({"action": "slowpoke", "requestId": "q3"})
            # The connection keeps working while the request waits.
            await alice.assert_open()
            e = await alice.expect("error", requestId="q3", timeout=t(5))
            assert e["code"] == "timeout", e
            assert 0.8 < time.monotonic() - t0 < t(4), time.monotonic() - t0
            await alice.assert_open()
            seen = [r for r in backend.log_lines_json() if r.get("route")]
            assert {r["route"] for r in seen} >= {"echo", "slowpoke"}, seen
            # a valid action that is no metric label: unknown, counted as route="other"
            await alice.send({"action": 'say"hi', "requestId": "q4"})
            e = await alice.expect("error", requestId="q4")
            assert e["code"] == "unknown_action", e
        finally:
            await close_all(alice)
    run(body())
    # natter_route_*_total{route=...}: one sample per action, by outcome (on B only)
    m = nh.node_metrics(B)
    want = {("requests", "echo"): 1, ("replies", "echo"): 1, ("requests", "nobodyHome"): 1,
            ("unknown", "nobodyHome"): 1, ("requests", "slowpoke"): 1,
            ("timeouts", "slowpoke"): 1, ("replies", "slowpoke"): 0,
            ("requests", "other"): 1, ("unknown", "other"): 1, ("failures", "echo"): 0}
    for (family, route), n in want.items():
        key = f'natter_route_{family}_total{{route="{route}"}}'
        assert m.get(key) == n, f"{key} = {m.get(key)}, wanted {n}"
    assert nh.node_metrics(A).get('natter_route_requests_total{route="echo"}') is None


# ---------------------------------------------------------------------------------------
# lifecycle events
# ---------------------------------------------------------------------------------------

def test_lifecycle_events(cluster):
    nats, _redis, A, B = cluster

    async def body():
        nc = await nn.Nats.connect(nats.url, name="event-subscriber")
        ev = await nn.EventCollector(nc, "t1").start()
        alice = bob = None
        try:
            alice = await Client.connect(A, "alice")
            cid = alice.welcome["connectionId"]
            e = await ev.expect(t(10), kind="connect", conn=cid)
            assert e["subject"] == "natter.events.t1.connect" and e["user"] == "alice" and \
                e["tenant"] == "t1" and e["node"] == "A" and e["source_ip"] == "127.0.0.1", e
            assert abs(e["timestamp_ms"] - now_ms()) < 60_000
            await alice.join("r1")
            e = await ev.expect(t(10), kind="join", conn=cid, room="r1")
            assert e["subject"] == "natter.events.t1.join" and e["user"] == "alice", e
            await alice.leave("r1")
            e = await ev.expect(t(10), kind="leave", conn=cid, room="r1")
            assert e["subject"] == "natter.events.t1.leave"
            await alice.join("r2")
            await alice.close()
            # A close leaves the rooms first, then disconnects.
            await ev.expect(t(10), kind="leave", conn=cid, room="r2")
            e = await ev.expect(t(10), kind="disconnect", conn=cid)
            assert e["reason"] == "client_close" and e["node"] == "A", e

            bob = await Client.connect(B, "bob")
            bcid = bob.welcome["connectionId"]
            await ev.expect(t(10), kind="connect", conn=bcid, node="B")
            st, _, _ = await api(A, "DELETE", f"/@connections/{bcid}")
            assert st == 204
            e = await ev.expect(t(10), kind="disconnect", conn=bcid)
            assert e["reason"] == "kicked" and e["node"] == "B", e
            # Exactly one disconnect per connection.
            await asyncio.sleep(0.3)
            assert len(ev.matching(kind="disconnect", conn=cid)) == 1
            assert len(ev.matching(kind="disconnect", conn=bcid)) == 1
        finally:
            await close_all(alice, bob)
            await nc.close()
    run(body())


def test_disconnect_reasons_timeout_and_slow_consumer(harness):
    nats, redis = harness.nats(), harness.redis()
    # A closes silent clients fast; B has the default liveness (its client stays silent).
    A = harness.node("A", nats=nats, redis=redis,
                     args=["--ping-interval", "0.5", "--idle-timeout", "1.5"])
    B = harness.node("B", nats=nats, redis=redis)

    async def body():
        nc = await nn.Nats.connect(nats.url, name="event-subscriber")
        ev = await nn.EventCollector(nc, "t1").start()
        quiet = slow = None
        try:
            # A client that never answers pings (RawWS does not) is closed for silence.
            quiet = await asyncio.to_thread(nh.RawWS, A.port, f"/ws?token={A.token('quiet')}")
            welcome = await asyncio.to_thread(quiet.recv_json)
            e = await ev.expect(t(15), kind="disconnect", conn=welcome["connectionId"])
            assert e["reason"] == "timeout", e

            # A client that stops reading is closed as a slow consumer once its send queue
            # passes --send-queue-bytes (after the kernel buffers filled up).
            slow = await asyncio.to_thread(nh.RawWS, B.port, f"/ws?token={B.token('slowpoke')}")
            cid = (await asyncio.to_thread(slow.recv_json))["connectionId"]
            slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

            def flood():
                for i in range(600):
                    st, _, _ = api_sync(B, "POST", f"/@connections/{cid}", body="x" * 60000)
                    if st == 410:
                        return i
                    assert st == 200, st
                return None
            assert await asyncio.to_thread(flood) is not None, "never closed as slow consumer"
            e = await ev.expect(t(10), kind="disconnect", conn=cid)
            assert e["reason"] == "slow_consumer", e
            st, _, b = await api(A, "POST", f"/@connections/{cid}", body="x")
            assert_json_error(st, b, 410, "gone")
        finally:
            for r in (quiet, slow):
                if r:
                    r.close()
            await nc.close()
    run(body())


def test_killed_node_connections_get_node_lost_events(cluster):
    """Depends on the Redis presence (issue 3): the survivor reaps the dead node."""
    nats, _redis, A, B = cluster

    async def body():
        nc = await nn.Nats.connect(nats.url, name="event-subscriber")
        ev = await nn.EventCollector(nc, "t1").start()
        carol = bob = None
        try:
            carol = await Client.connect(A, "carol")
            bob = await Client.connect(B, "bob")
            bcid = bob.welcome["connectionId"]
            await carol.join("ops")
            await bob.join("ops")
            await ev.expect(t(10), kind="join", conn=bcid, room="ops")
            B.kill()
            e = await ev.expect(t(30), kind="disconnect", conn=bcid)
            assert e["reason"] == "node_lost" and e["user"] == "bob", e
            assert e["node"] == "B", f"the event names the node that held the connection: {e}"
            e = await ev.expect(t(10), kind="leave", user="bob", room="ops")
            assert e["reason"] == "node_lost", e
            p = await carol.expect("presence", userId="bob", status="offline", timeout=t(10))
            assert p["roomId"] == "ops"
            await asyncio.sleep(0.5)
            assert len(ev.matching(kind="disconnect", conn=bcid)) == 1, \
                "a lost connection is reported once"
            st, _, b = await api(A, "GET", f"/@connections/{bcid}")
            assert_json_error(st, b, 410, "gone")
        finally:
            await close_all(carol, bob)
            await nc.close()
    run(body(), timeout=t(90))


# ---------------------------------------------------------------------------------------
# external authorizer
# ---------------------------------------------------------------------------------------

def upgrade_status(node, user, query=""):
    tok = node.token(user)
    st, _hdrs, body = nh.raw_http(node.port, nh.upgrade_request(
        f"/ws?token={tok}{query}", f"{nh.HOST}:{node.port}",
        {"Origin": "https://app.example", "User-Agent": "authz-test/1"}), timeout=t(10))
    return st, body


def test_external_authorizer(harness):
    nats, _redis, (A,) = harness.cluster(1, args=["--auth-request", "on", "--auth-timeout",
                                                   "1"])

    async def body():
        # No authorizer listening: fail closed with 503.
        st, b = await asyncio.to_thread(upgrade_status, A, "alice")
        assert st == 503, (st, b)
        backend = start_backend(harness, nats, "--authz", "--delay", "3")

        alice = await Client.connect(A, "alice", headers={"User-Agent": "authz-test/2"},
                                     origin="https://app.example")
        try:
            await alice.assert_open()
            reqs = [r["authz"] for r in backend.log_lines_json() if r.get("authz")]
            req = [r for r in reqs if r["user"] == "alice"][-1]
            assert req["tenant"] == "t1" and req["node"] == "A", req
            assert req["conn"] == alice.welcome["connectionId"], (req, alice.welcome)
            assert req["source_ip"] == "127.0.0.1" and req["path"] == "/ws", req
            assert req["origin"] == "https://app.example", req
            assert "Authorization" not in req["headers"] and req["query"] == "", req
        finally:
            await close_all(alice)

        st, b = await asyncio.to_thread(upgrade_status, A, "alice2", "&device=d1")
        assert st == 101, (st, b)
        req = [r["authz"] for r in backend.log_lines_json()
               if r.get("authz", {}).get("user") == "alice2"][-1]
        assert req["query"] == "device=d1", req

        st, b = await asyncio.to_thread(upgrade_status, A, "mallory")
        assert st == 403 and b"banned" in b, (st, b)
        st, b = await asyncio.to_thread(upgrade_status, A, "slowuser")
        assert st == 503, (st, b)
        # The authorizer replaced the allowed rooms with ["vip-*"].
        roomy = await Client.connect(A, "roomy")
        try:
            await roomy.join("vip-lounge")
            rid = await roomy.action("joinRoom", roomId="lobby")
            e = await roomy.expect("error", requestId=rid)
            assert e["code"] == "forbidden", e
            await roomy.assert_open()
        finally:
            await close_all(roomy)

        m = metrics(A)
        assert m["natter_authz_denied_total"] >= 1 and m["natter_authz_unavailable_total"] >= 2
        assert m["natter_authz_requests_total"] >= 5, m
    run(body())


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------

def test_metrics_counters_move(cluster):
    nats, _redis, A, B = cluster

    async def body():
        m0 = metrics(A)
        assert m0["natter_bus_connected"] == 1 and m0["natter_store_connected"] == 1, m0
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        try:
            await alice.join("m")
            await bob.join("m")
            await nats.await_sub_count("natter.room.t1.m", 2)
            ack = await bob.say("m", "hello")
            await alice.expect("message", id=ack["id"])
            await api(A, "GET", "/@connections/none")
            await api(A, "GET", "/@connections/none", token="")
            await api(A, "GET", "/nope")
            m1 = metrics(A)

            def d(name):
                return m1.get(name, 0) - m0.get(name, 0)
            assert m1["natter_connections"] == m0["natter_connections"] + 1, (m0, m1)
            assert d("natter_connections_total") == 1
            assert d("natter_joins_total") == 1
            assert d("natter_messages_in_total") >= 1
            assert d("natter_deliveries_total") >= 1
            assert d("natter_delivery_latency_seconds_count") >= 1
            assert d("natter_bus_received_total") >= 1
            assert d('natter_api_responses_total{code="410"}') == 1
            assert d('natter_api_responses_total{code="401"}') == 1
            assert d('natter_api_responses_total{code="404"}') == 1
            assert d("natter_api_requests_total") >= 4
            assert m1["natter_bus_subscriptions"] >= 1
            assert d("natter_bytes_in_total") > 0 and d("natter_bytes_out_total") > 0
            # Cumulative histogram: +Inf bucket == count.
            assert m1['natter_delivery_latency_seconds_bucket{le="+Inf"}'] == \
                m1["natter_delivery_latency_seconds_count"]
        finally:
            await close_all(alice, bob)
        await asyncio.sleep(0.3)
        m2 = metrics(A)
        assert m2["natter_connections"] == m0["natter_connections"], m2
    run(body())

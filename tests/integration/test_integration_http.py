"""HTTP integration of routes (--integration-url): a real node, a real HTTP backend
(integ_backend.py, in this process) and real WebSocket clients. The events are API
Gateway WebSocket Lambda proxy events; see docs/integrations.md."""

import asyncio
import base64
import json
import os
import random
import re
import sys
import time

import pytest

import natter_harness as nh
from natter_harness import Client, close_all, run, t
from integ_backend import Answer, Backend

ROUTES = ("$connect,$disconnect,$default,echo,lambda,lambda64,empty,fail,notfound,hang,"
          "garbage,seq,sendMessage")


def frame_body(ev):
    try:
        return json.loads(ev.get("body") or "")
    except ValueError:
        return None


def rule(ev):
    rc = ev["requestContext"]
    route = rc["routeKey"]
    user = rc["authorizer"].get("principalId", "")
    if route == "$connect":
        if user.startswith("banned"):
            return Answer(200, {"statusCode": 403, "body": "banned"})
        if user == "teapot":
            return Answer(418, "short and stout", "text/plain")
        if user.startswith("slowconn"):
            return "hang"
        return Answer(200)
    if route == "$disconnect":
        return Answer(200)
    body = frame_body(ev)
    if route == "echo":
        return Answer(200, {"type": "echo", "echo": body, "routeKey": route})
    if route == "lambda":
        return Answer(200, {"statusCode": 200, "headers": {"X-A": "b"},
                            "body": json.dumps({"type": "proxied", "v": body["v"]})})
    if route == "lambda64":
        raw = json.dumps({"type": "b64", "v": body["v"]}).encode()
        return Answer(200, {"statusCode": 200, "isBase64Encoded": True,
                            "body": base64.b64encode(raw).decode()})
    if route == "empty":
        return Answer(204)
    if route == "fail":
        return Answer(500, "boom", "text/plain")
    if route == "notfound":
        return Answer(200, {"statusCode": 404, "body": "nope"})
    if route == "hang":
        return "hang"
    if route == "garbage":
        return "garbage"
    if route == "seq":
        return Answer(200, {"type": "seq", "n": body["n"]}, delay=random.uniform(0, 0.03))
    if route == "sendMessage":
        return Answer(200, {"type": "own-send", "message": body.get("message")})
    return Answer(200, {"type": "default", "raw": ev.get("body")})


@pytest.fixture
def b():
    """The HTTP backend (answers by `rule`; a test may swap b.rule)."""
    backend = Backend(rule)
    yield backend
    backend.close()


def integ_node(harness, backend, *extra, name="A", url=None, routes=ROUTES, timeout="1"):
    return harness.node(name, args=["--integration-url", url or backend.url,
                                    "--integration-routes", routes,
                                    "--integration-timeout", timeout, *extra])


def metrics(node):
    return nh.node_metrics(node)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


# ---------------------------------------------------------------------------------------
# the event, field by field
# ---------------------------------------------------------------------------------------

def test_event_fields_for_each_event_type(harness, b):
    A = integ_node(harness, b, "--integration-stage", "prod")

    async def body():
        tok = nh.make_token("alice", "t1", role="admin", plan="gold")
        before = int(time.time() * 1000)
        alice = await Client.connect(f"ws://{nh.HOST}:{A.port}/ws?device=d1&token={tok}",
                                     token=tok, query_token=False,
                                     headers={"User-Agent": "integ-test/1",
                                              "X-Forwarded-For": "203.0.113.9"},
                                     origin="https://app.example")
        cid = alice.welcome["connectionId"]
        text = json.dumps({"action": "echo", "x": [1, 2], "requestId": "r1"})
        await alice.send(text)
        got = await alice.expect("echo")
        assert got == {"type": "echo", "echo": json.loads(text), "routeKey": "echo"}, got
        await alice.close()
        (conn,) = b.events("$connect")
        (msg,) = b.events("echo")
        (disc,) = await asyncio.to_thread(b.wait_events, "$disconnect")
        after = int(time.time() * 1000)
        for ev, kind in ((conn, "CONNECT"), (msg, "MESSAGE"), (disc, "DISCONNECT")):
            rc = ev["requestContext"]
            assert rc["eventType"] == kind, rc
            assert rc["connectionId"] == cid, rc
            assert rc["connectedAt"] == conn["requestContext"]["connectedAt"], rc
            assert before <= rc["connectedAt"] <= after, (before, rc, after)
            assert before <= rc["requestTimeEpoch"] <= after, rc
            assert re.fullmatch(r"[A-Za-z0-9]{20}", rc["requestId"]), rc
            assert rc["domainName"] == f"{nh.HOST}:{A.port}", rc
            assert rc["stage"] == "prod" and rc["apiId"] == "natter", rc
            assert rc["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "integ-test/1"}, rc
            az = rc["authorizer"]
            assert az["principalId"] == "alice" and az["tenantId"] == "t1", az
            assert az["role"] == "admin" and az["plan"] == "gold" and az["sub"] == "alice", az
            assert ev["isBase64Encoded"] is False, ev
            assert ev["<headers>"]["Content-Type"] == "application/json", ev["<headers>"]
            assert ev["<headers>"]["X-Natter-Connection-Id"] == cid, ev["<headers>"]
        ids = {e["requestContext"]["requestId"] for e in (conn, msg, disc)}
        assert len(ids) == 3, ids
        assert conn["requestContext"]["routeKey"] == "$connect"
        assert disc["requestContext"]["routeKey"] == "$disconnect"
        # CONNECT: the upgrade's headers and query, without the credentials
        h = conn["headers"]
        assert h["Host"] == f"{nh.HOST}:{A.port}" and h["User-Agent"] == "integ-test/1", h
        assert h["Origin"] == "https://app.example" and h["Upgrade"].lower() == "websocket", h
        assert h["X-Forwarded-For"] == "203.0.113.9" and "Sec-WebSocket-Key" in h, h
        assert "Authorization" not in h, h
        assert conn["multiValueHeaders"] == {k: [v] for k, v in h.items()}, conn
        assert conn["queryStringParameters"] == {"device": "d1"}, conn
        for k in ("body", "messageId"):
            assert k not in conn and k not in conn["requestContext"], conn
        # MESSAGE: the frame as sent, a message id
        assert msg["body"] == text, msg
        assert re.fullmatch(r"[A-Za-z0-9]{20}", msg["requestContext"]["messageId"]), msg
        assert "headers" not in msg and "disconnectStatusCode" not in msg["requestContext"]
        # DISCONNECT: why
        rc = disc["requestContext"]
        assert rc["disconnectStatusCode"] == 1000, rc
        assert rc["disconnectReason"] == "client closed the connection", rc
        assert "body" not in disc and "headers" not in disc, disc
    run(body())


def test_dotted_route_selection_expression(harness, b):
    A = integ_node(harness, b, "--route-selection-expression", "$request.body.meta.route")

    async def body():
        c = await Client.connect(A, "dot")
        try:
            await c.send({"meta": {"route": "echo"}, "v": 1})
            e = await c.expect("echo")
            assert e["echo"] == {"meta": {"route": "echo"}, "v": 1}, e
            # `action` is not the selection expression here: echo -> no route -> $default
            await c.send({"action": "echo"})
            d = await c.expect("default")
            assert json.loads(d["raw"]) == {"action": "echo"}, d
            # built-in actions stay built in
            await c.join("lobby")
        finally:
            await close_all(c)
    run(body())


# ---------------------------------------------------------------------------------------
# $connect
# ---------------------------------------------------------------------------------------

def upgrade(node, user):
    tok = node.token(user)
    st, _h, body = nh.raw_http(node.port, nh.upgrade_request(
        f"/ws?token={tok}", f"{nh.HOST}:{node.port}"), timeout=t(10))
    return st, body


def test_connect_refusal_takes_the_backends_status(harness, b):
    A = integ_node(harness, b)

    async def body():
        bystander = await Client.connect(A, "bob")
        try:
            assert (await asyncio.to_thread(upgrade, A, "banned1"))[0] == 403
            assert (await asyncio.to_thread(upgrade, A, "teapot"))[0] == 418
            # a hanging $connect: 503 after --integration-timeout, the node serves others
            t0 = time.monotonic()
            slow = asyncio.create_task(asyncio.to_thread(upgrade, A, "slowconn1"))
            await asyncio.sleep(0.2)
            for _ in range(5):
                t1 = time.monotonic()
                await bystander.assert_open()
                assert time.monotonic() - t1 < 0.5
            other = await Client.connect(A, "carol")
            await other.assert_open()
            st, _ = await slow
            assert st == 503 and 0.9 <= time.monotonic() - t0 < 3, (st, time.monotonic() - t0)
            await close_all(other)
            # refused connections got no $disconnect; accepted ones will
            await bystander.close()
            evs = await asyncio.to_thread(b.wait_events, "$disconnect", 2)
            users = sorted(e["requestContext"]["authorizer"]["principalId"] for e in evs)
            assert users == ["bob", "carol"], users
            await asyncio.sleep(0.3)
            assert len(b.events("$disconnect")) == 2
            m = metrics(A)
            assert m["natter_integration_connect_refused_total"] == 3, m
        finally:
            await close_all(bystander)
    run(body())


# ---------------------------------------------------------------------------------------
# message routes
# ---------------------------------------------------------------------------------------

def test_route_responses_relayed_and_errors(harness, b):
    A = integ_node(harness, b)

    async def body():
        c = await Client.connect(A, "alice")
        try:
            await c.send({"action": "lambda", "v": 7})
            assert (await c.expect("proxied"))["v"] == 7
            await c.send({"action": "lambda64", "v": 8})
            assert (await c.expect("b64"))["v"] == 8
            await c.send({"action": "empty", "requestId": "e1"})
            await c.send({"action": "fail", "requestId": "f1"})
            e = await c.expect("error", requestId="f1")
            assert e["code"] == "backend_error" and e["status"] == 500, e
            await c.send({"action": "notfound", "requestId": 5})
            e = await c.expect("error", requestId=5)
            assert e["code"] == "backend_error" and e["status"] == 404, e
            t0 = time.monotonic()
            await c.send({"action": "hang", "requestId": "h1"})
            e = await c.expect("error", requestId="h1")
            assert e["code"] == "timeout" and 0.9 <= time.monotonic() - t0 < 3, e
            await c.send({"action": "garbage", "requestId": "g1"})
            e = await c.expect("error", requestId="g1")
            assert e["code"] == "backend_error" and e["status"] == 502, e
            # an app's own sendMessage goes to the integration (in the list) ...
            await c.send({"action": "sendMessage", "roomId": "r", "message": "hi"})
            assert (await c.expect("own-send"))["message"] == "hi"
            # ... built-ins not in the list stay built in, unknown actions are $default
            await c.join("lobby")
            await c.send({"action": "nosuch", "z": 1})
            d = await c.expect("default")
            assert json.loads(d["raw"]) == {"action": "nosuch", "z": 1}
            await c.send("not json at all")
            d = await c.expect("default")
            assert d["raw"] == "not json at all"
            # the empty answer sent nothing
            assert not c.received(pred=lambda f: f.get("requestId") == "e1"), c.frames
            assert len(b.events("empty")) == 1
            await c.assert_open()
        finally:
            await close_all(c)
    run(body())


def test_invocations_of_a_connection_keep_their_order(harness, b):
    A = integ_node(harness, b)

    async def body():
        c = await Client.connect(A, "seq")
        other = await Client.connect(A, "seq2")
        try:
            for i in range(30):
                await c.send({"action": "seq", "n": i})
                await other.send({"action": "seq", "n": 100 + i})
            for i in range(30):
                f = await c.expect("seq")
                assert f["n"] == i, (i, f)
            for i in range(30):
                assert (await other.expect("seq"))["n"] == 100 + i
            cid = c.welcome["connectionId"]
            mine = [frame_body(e)["n"] for e in b.events("seq")
                    if e["requestContext"]["connectionId"] == cid]
            assert mine == list(range(30)), mine
            await c.send({"action": "seq", "n": 30})
            await c.close()
            (d,) = await asyncio.to_thread(
                b.wait_events, "$disconnect", 1,
                pred=lambda e: e["requestContext"]["connectionId"] == cid)
            last = [e for e in b.events("seq") if e["requestContext"]["connectionId"] == cid][-1]
            assert frame_body(last)["n"] == 30 and last["<at>"] < d["<at>"], (last, d)
        finally:
            await close_all(c, other)
    run(body())


def test_disconnect_retries_with_backoff(harness, b):
    attempts = []

    def flaky(ev):
        if ev["requestContext"]["routeKey"] == "$disconnect":
            attempts.append(ev)
            return Answer(500 if len(attempts) < 3 else 200)
        return rule(ev)
    b.rule = flaky
    A = integ_node(harness, b)

    async def body():
        c = await Client.connect(A, "dave")
        await c.close()
        await asyncio.to_thread(nh.wait_until, lambda: len(attempts) >= 3, t(10),
                                what="3 $disconnect attempts")
        ids = {e["requestContext"]["requestId"] for e in attempts}
        assert len(ids) == 1, ids  # the same invocation, retried
        gaps = [attempts[i + 1]["<at>"] - attempts[i]["<at>"] for i in range(2)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.45 and gaps[1] > gaps[0], gaps
        await asyncio.sleep(1.5)
        assert len(attempts) == 3
        m = metrics(A)
        assert m["natter_integration_retries_total"] == 2, m
        assert m["natter_integration_dropped_total"] == 0, m
    run(body())


# ---------------------------------------------------------------------------------------
# bad backends: bounded, others unaffected
# ---------------------------------------------------------------------------------------

def test_hanging_backend_bounded_and_others_unaffected(harness, b):
    A = integ_node(harness, b, "--integration-concurrency", "4", "--integration-queue", "8",
                   "--rate-limit", "0", routes="$connect,$disconnect,hang")

    async def body():
        flooders = [await Client.connect(A, f"flood{i}") for i in range(6)]
        bystander = await Client.connect(A, "calm")
        try:
            await bystander.join("lobby")
            rss0 = None
            for rnd in range(3):
                for f in flooders:
                    for _ in range(40):
                        await f.send({"action": "hang"})
                # the bystander's built-ins answer at once meanwhile
                for _ in range(5):
                    t1 = time.monotonic()
                    await bystander.assert_open()
                    await bystander.say("lobby", {"round": rnd})
                    assert time.monotonic() - t1 < 0.5, time.monotonic() - t1
                m = metrics(A)
                assert m["natter_integration_pending"] <= 12, m
                limited = sum(len(f.received("error", code="rate_limited")) for f in flooders)
                assert limited >= (rnd + 1) * 240 - (rnd + 1) * 12 - 12, limited
                if rss0 is None:
                    rss0 = rss_kb(A.pid)
                # what was accepted times out (1 s each, one at a time per connection)
                await asyncio.sleep(3)
            # three rounds later the node holds no more memory than after the first
            assert rss_kb(A.pid) - rss0 < 16 * 1024, (rss0, rss_kb(A.pid))
            m = metrics(A)
            assert m["natter_integration_rate_limited_total"] >= 600, m
            # accepted ones time out one at a time per connection (its order is kept)
            timeouts = sum(len(f.received("error", code="timeout")) for f in flooders)
            assert timeouts >= 5 and m["natter_integration_timeouts_total"] >= timeouts, m
        finally:
            await close_all(bystander, *flooders)
    run(body(), timeout=t(120))


def test_refusing_and_garbage_backends(harness, b):
    dead = nh.free_port()
    A = harness.node("A", args=["--integration-url", f"http://{nh.HOST}:{dead}/x",
                                "--integration-routes", "$disconnect,echo",
                                "--integration-timeout", "1"])
    b.rule = lambda ev: Answer(200) if ev["requestContext"]["routeKey"] == "$connect" \
        else "garbage"
    G = integ_node(harness, b, name="G")

    async def body():
        c = await Client.connect(A, "erin")
        gc = await Client.connect(G, "frank")
        try:
            for i in range(20):
                t0 = time.monotonic()
                await c.send({"action": "echo", "requestId": i})
                e = await c.expect("error", requestId=i)
                assert e["code"] == "backend_error" and e["status"] == 502, e
                assert time.monotonic() - t0 < 0.5
                await gc.send({"action": "echo", "requestId": i})
                e = await gc.expect("error", requestId=i)
                assert e["code"] == "backend_error" and e["status"] == 502, e
            await c.join("lobby")
            await c.assert_open()
            await gc.assert_open()
            await c.close()
            # $disconnect: 4 attempts (0.25 + 0.5 + 1 s apart), then given up
            await asyncio.to_thread(nh.wait_until,
                                    lambda: metrics(A)["natter_integration_dropped_total"] == 1,
                                    t(10), what="$disconnect given up")
            m = metrics(A)
            assert m["natter_integration_retries_total"] == 3, m
            assert m["natter_integration_failures_total"] >= 24, m
            assert (await asyncio.to_thread(upgrade, G, "gina"))[0] == 101
        finally:
            await close_all(c, gc)
    run(body())
    # $connect against a refusing backend: 502
    B = harness.node("B", args=["--integration-url", f"http://{nh.HOST}:{dead}/x"])
    assert upgrade(B, "hank")[0] == 502


def test_connect_after_the_external_authorizer(harness, b):
    """--auth-request and a $connect route: the authorizer decides first, then $connect."""
    backend_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "route_backend.py")
    nats, _redis, (A,) = harness.cluster(1, args=[
        "--auth-request", "on", "--auth-timeout", "2", "--integration-url", b.url,
        "--integration-routes", ROUTES, "--integration-timeout", "1"])
    log, name = harness._log("authz")
    authz = harness._start(nh.Proc(name, [sys.executable, backend_py, "--nats", nats.url,
                                          "--authz"], log))
    nh.wait_until(lambda: any(r.get("ready") for r in authz.log_lines_json()), t(15),
                  what="authorizer ready")

    async def body():
        # the authorizer denies mallory: 403 with its reason, $connect is never asked
        st, body_ = await asyncio.to_thread(upgrade, A, "mallory")
        assert st == 403 and b"banned" in body_, (st, body_)
        assert not b.events("$connect"), b.events("$connect")
        # allowed by the authorizer, then refused by $connect (banned* users)
        assert (await asyncio.to_thread(upgrade, A, "banned2"))[0] == 403
        (ev,) = b.events("$connect")
        assert ev["requestContext"]["authorizer"]["principalId"] == "banned2"
        # allowed by both
        c = await Client.connect(A, "alice")
        try:
            await c.send({"action": "echo", "n": 1})
            assert (await c.expect("echo"))["echo"]["n"] == 1
            (ev,) = b.events("$connect", pred=lambda e: e["requestContext"]["authorizer"]
                             ["principalId"] == "alice")
            assert ev["requestContext"]["connectionId"] == c.welcome["connectionId"]
        finally:
            await close_all(c)
    run(body())

"""Signed webhooks (--webhook-url): a real node (and a two-node cluster), a real HTTP
endpoint (integ_backend.Backend) and real WebSocket clients. Signatures are checked the way
docs/integrations.md tells receivers to."""

import asyncio
import hashlib
import hmac
import signal
import time

import pytest

import natter_harness as nh
from natter_harness import Client, close_all, run, t
from integ_backend import Answer, Backend

SECRET = "whsec-natter-test-0123456789"
FIELDS = {"type", "id", "tenantId", "userId", "roomId", "connectionId", "node", "timestamp"}


def verify(secret, body, header):
    """The receiver's check (docs/integrations.md): HMAC-SHA256 of the raw body."""
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header)


@pytest.fixture
def hook():
    b = Backend(lambda req: Answer(200))
    yield b
    b.close()


def wh_args(url, *extra):
    return ["--webhook-url", url, "--webhook-secret", SECRET, *extra]


def delivered(b):
    """Events of every request that was answered 2xx... i.e. all recorded bodies, flattened,
    each request's signature verified."""
    out = []
    for req in b.events():
        assert verify(SECRET, req["<raw>"], req["<headers>"]["X-Natter-Signature"]), req
        out.extend(req["events"])
    return out


def find(evs, type_, user, room=None):
    return [e for e in evs if e["type"] == type_ and e["userId"] == user and
            (room is None or e["roomId"] == room)]


def wait_for(b, pred, what, timeout=None):
    return nh.wait_until(lambda: pred(delivered(b)), timeout or t(15), what=what)


def test_events_signed_and_complete(harness, hook):
    A = harness.node("A", args=wh_args(hook.url))

    async def body():
        t0 = int(time.time() * 1000)
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(A, "bob")
        await alice.join("lobby")
        await bob.join("lobby")
        await alice.leave("lobby")
        acid, bcid = alice.welcome["connectionId"], bob.welcome["connectionId"]
        await close_all(alice, bob)
        want = [("connect", "alice", None), ("connect", "bob", None),
                ("join", "alice", "lobby"), ("online", "alice", "lobby"),
                ("join", "bob", "lobby"), ("online", "bob", "lobby"),
                ("leave", "alice", "lobby"), ("offline", "alice", "lobby"),
                ("leave", "bob", "lobby"), ("offline", "bob", "lobby"),
                ("disconnect", "alice", None), ("disconnect", "bob", None)]
        await asyncio.to_thread(wait_for, hook, lambda evs: all(
            find(evs, ty, u, r) for ty, u, r in want), "every event")
        evs = delivered(hook)
        t1 = int(time.time() * 1000)
        assert len({e["id"] for e in evs}) == len(evs), evs  # unique ids
        for e in evs:
            assert FIELDS <= set(e), e
            assert e["tenantId"] == "t1" and e["node"] == "A", e
            assert t0 - 1000 <= e["timestamp"] <= t1, e
        for ty, u, r in want:
            (e,) = find(evs, ty, u, r)  # exactly once each
            assert e["roomId"] == r, e
            if ty in ("connect", "disconnect", "join", "leave"):
                assert e["connectionId"] == (acid if u == "alice" else bcid), e
        assert find(evs, "online", "alice")[0]["connectionId"] == acid
        assert find(evs, "disconnect", "bob")[0]["reason"] == "client_close"
        for req in hook.events():
            h = req["<headers>"]
            assert h["Content-Type"] == "application/json", h
            assert abs(int(h["X-Natter-Timestamp"]) - time.time()) < 60, h
            assert not verify("wrong-secret", req["<raw>"], h["X-Natter-Signature"])
        m = nh.node_metrics(A)
        assert m["natter_webhook_delivered_total"] == len(evs), m
        assert m["natter_webhook_dropped_total"] == 0 and m["natter_webhook_queue"] == 0, m
    run(body())


def test_retries_on_500_then_delivers_the_same_events(harness, hook):
    answers = iter([500, 503])
    hook.rule = lambda req: Answer(next(answers, 200))
    A = harness.node("A", args=wh_args(hook.url))

    async def body():
        c = await Client.connect(A, "carol")
        await asyncio.to_thread(nh.wait_until, lambda: len(hook.events()) >= 3, t(15),
                                what="two failures and a success")
        reqs = hook.events()[:3]
        assert reqs[0]["<raw>"] == reqs[1]["<raw>"] == reqs[2]["<raw>"], reqs
        gaps = [reqs[i + 1]["<at>"] - reqs[i]["<at>"] for i in range(2)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.45, gaps  # backoff
        (e,) = find(reqs[2]["events"], "connect", "carol")
        m = nh.node_metrics(A)
        assert m["natter_webhook_retries_total"] == 2 and m["natter_webhook_delivered_total"] >= 1
        await close_all(c)
    run(body())


def test_nothing_lost_across_a_backend_restart(harness, hook):
    A = harness.node("A", args=wh_args(hook.url))

    async def body():
        first = await Client.connect(A, "u0")
        await asyncio.to_thread(wait_for, hook, lambda evs: find(evs, "connect", "u0"),
                                "first event")
        hook.close()  # the endpoint goes away
        users = [f"u{i}" for i in range(1, 11)]
        clients = [await Client.connect(A, u) for u in users]
        for c in clients:
            await c.join("r")
        await asyncio.sleep(1.5)  # failed attempts meanwhile
        hook.restart()
        await asyncio.to_thread(wait_for, hook, lambda evs: all(
            find(evs, "connect", u) and find(evs, "join", u, "r") and find(evs, "online", u, "r")
            for u in users), "every event after the restart", t(30))
        m = nh.node_metrics(A)
        assert m["natter_webhook_retries_total"] >= 1 and m["natter_webhook_dropped_total"] == 0
        await close_all(first, *clients)
    run(body())


def test_queue_bound_drops_and_says_so(harness):
    dead = nh.free_port()
    A = harness.node("A", args=wh_args(f"http://{nh.HOST}:{dead}/hook", "--webhook-queue", "5"))

    async def body():
        cs = [await Client.connect(A, f"q{i}") for i in range(10)]
        m = nh.node_metrics(A)
        assert m["natter_webhook_events_total"] == 10, m
        assert m["natter_webhook_queue"] <= 5 and m["natter_webhook_dropped_total"] >= 5, m
        await cs[0].assert_open()
        lines = [r for r in A.log_lines_json() if r.get("msg") == "webhook queue full: dropping events"]
        assert len(lines) == 1, lines  # once per overflow episode
        await close_all(*cs)
    run(body())


def test_cluster_presence_transitions_once_and_a_crashed_nodes_events(harness, hook):
    nats, redis, (A, B) = harness.cluster(2, args=wh_args(hook.url))

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        alice2 = await Client.connect(B, "alice")  # a second tab, on the other node
        await alice.join("r")
        await bob.join("r")
        await alice2.join("r")
        await asyncio.to_thread(wait_for, hook, lambda evs: len(find(evs, "join", "alice", "r")) == 2
                                and find(evs, "online", "bob", "r"), "joins")
        evs = delivered(hook)
        assert len(find(evs, "online", "alice", "r")) == 1, evs  # two tabs, one transition
        acid = alice.welcome["connectionId"]
        A.stop(signal.SIGKILL)
        await alice2.close()  # alice's last connection now is the dead one on A
        # B reaps A: alice's connection on A is reported by B, and alice goes offline once
        await asyncio.to_thread(wait_for, hook, lambda evs: find(evs, "offline", "alice", "r")
                                and [e for e in find(evs, "disconnect", "alice")
                                     if e["connectionId"] == acid], "the reap", t(30))
        await asyncio.sleep(1.5)
        evs = delivered(hook)
        assert len(find(evs, "offline", "alice", "r")) == 1, evs
        (d,) = [e for e in find(evs, "disconnect", "alice") if e["connectionId"] == acid]
        assert d["node"] == "A" and d["reason"] == "node_lost", d
        assert len(find(evs, "online", "bob", "r")) == 1 and not find(evs, "offline", "bob")
        await close_all(bob)
    run(body(), timeout=t(90))

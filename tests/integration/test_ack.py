"""`ack` means stored (docs/protocol.md §13, docs/history.md "Outages"): with history on, a
room message is acknowledged only once the JetStream stream stored it; a client-chosen `id`
makes a resend idempotent (the stream's duplicate window); while the only nats-server is
down, sendMessage answers `error unavailable` within --ack-timeout and nothing is delivered
that the stream did not store; a resend with the same id after the server is back is
acknowledged and stored and delivered once; a resume across the outage never says
`recovered: true` while a message is missing. The HTTP API push gets the same answers
(202 once stored, 503 unavailable).
"""

import asyncio
import json
import time

import natter_harness as nh
from natter_harness import Client, close_all, run, t

ACK_TIMEOUT = 2.0


def node_args(*extra):
    return ("--ack-timeout", str(ACK_TIMEOUT)) + tuple(extra)


async def send_id(client, room, message, msg_id):
    """sendMessage with `id`; returns the reply frame (ack or error)."""
    rid = await client.action("sendMessage", roomId=room, message=message, id=msg_id)
    return await client.expect(None, timeout=ACK_TIMEOUT + t(5),
                               pred=lambda f: f.get("requestId") == rid
                               and f.get("type") in ("ack", "error"))


async def resend_until_acked(client, room, message, msg_id, within):
    """Resends with the same id (as a client does after `unavailable`) until acked."""
    deadline = time.monotonic() + within
    while True:
        r = await send_id(client, room, message, msg_id)
        if r["type"] == "ack":
            return r
        assert r["code"] == "unavailable", r
        assert time.monotonic() < deadline, f"{msg_id} never acked: {r}"
        await asyncio.sleep(0.2)


def one_node(harness):
    """nats-server -js, redis-server and one node with --ack-timeout ACK_TIMEOUT."""
    nats = harness.nats()
    redis = harness.redis()
    return nats, harness.node("A", nats=nats, redis=redis, args=node_args())


def alice_and_bob(node):
    return Client.connect(node, "alice"), Client.connect(node, "bob")


def history_ids(node, room):
    status, _, body = node.api("GET", f"/v1/tenants/t1/rooms/{room}/messages?limit=100")
    assert status == 200, (status, body)
    return [m["id"] for m in json.loads(body)["messages"]]


def test_duplicate_id_while_up_is_acked_and_delivered_once(harness):
    nats = harness.nats()
    redis = harness.redis()
    A = harness.node("A", nats=nats, redis=redis, args=node_args())
    B = harness.node("B", nats=nats, redis=redis, args=node_args())

    async def body():
        a = await Client.connect(A, "alice")
        b = await Client.connect(B, "bob")
        try:
            await a.join("d")
            await b.join("d")
            first = await send_id(a, "d", {"n": 1}, "m-1")
            assert first["type"] == "ack" and first["id"] == "m-1", first
            again = await send_id(a, "d", {"n": 1}, "m-1")
            assert again["type"] == "ack" and again["id"] == "m-1", again
            m = await b.expect("message", id="m-1", timeout=t(5))
            assert m["seq"] > 0 and m["message"] == {"n": 1}
            # bob may use the same id: scoped per sender, so it is another message
            theirs = await send_id(b, "d", {"n": 2}, "m-1")
            assert theirs["type"] == "ack", theirs
            await a.expect("message", id="m-1", pred=lambda f: f["userId"] == "bob",
                           timeout=t(5))
            await b.expect_none("message", t(1), id="m-1", pred=lambda f: f["userId"] == "alice"
                                and f is not m)
            assert len([f for f in b.received("message", id="m-1")
                        if f["userId"] == "alice"]) == 1
            # a bad id is refused, nothing delivered
            for bad in ("", "a" * 65, "has.dot", "has:colon", "sp ace", 7):
                r = await send_id(a, "d", {"bad": True}, bad)
                assert r["type"] == "error" and r["code"] == "bad_request", (bad, r)
            ok64 = await send_id(a, "d", {"n": 3}, "x" * 64)
            assert ok64["type"] == "ack", ok64
        finally:
            await close_all(a, b)
    run(body())
    assert history_ids(A, "d").count("m-1") == 2  # alice's and bob's, alice's once
    m = nh.node_metrics(A)
    assert m["natter_history_dedup_total"] == 1, m


def test_nats_down_unavailable_then_resend_stored_once(harness):
    nats, A = one_node(harness)

    async def body():
        a, b = [await c for c in alice_and_bob(A)]
        try:
            await a.join("o")
            await b.join("o")
            pre = await send_id(a, "o", "before", "p-0")
            assert pre["type"] == "ack"
            await b.expect("message", id="p-0", timeout=t(5))
            await asyncio.to_thread(nats.stop)
            t0 = time.monotonic()
            r = await send_id(a, "o", "during", "p-1")
            took = time.monotonic() - t0
            assert r["type"] == "error" and r["code"] == "unavailable", r
            assert ACK_TIMEOUT - 0.1 <= took <= ACK_TIMEOUT + t(2), took
            # nothing the stream did not store reaches the room
            await b.expect_none("message", 0.5, id="p-1")
            await asyncio.to_thread(harness.restart, nats)
            ack = await resend_until_acked(a, "o", "during", "p-1", t(20))
            assert ack["id"] == "p-1"
            got = await b.expect("message", id="p-1", timeout=t(5))
            again = await send_id(a, "o", "during", "p-1")  # once more: a duplicate
            assert again["type"] == "ack"
            await b.expect_none("message", t(1), id="p-1", pred=lambda f: f is not got)
            assert len(b.received("message", id="p-1")) == 1
            assert len(a.received("message", id="p-1")) == 1
        finally:
            await close_all(a, b)
    run(body())
    assert history_ids(A, "o") == ["p-0", "p-1"]
    m = nh.node_metrics(A)
    assert m["natter_history_unavailable_total"] >= 1, m
    assert m["natter_history_live_only_total"] == 0, m


def test_resume_across_outage_never_hides_a_missing_message(harness):
    nats, A = one_node(harness)

    async def body():
        a, b = [await c for c in alice_and_bob(A)]
        b2 = None
        try:
            await a.join("g")
            await b.join("g")
            first = await send_id(a, "g", 0, "g-0")
            assert first["type"] == "ack"
            since = (await b.expect("message", id="g-0", timeout=t(5)))["seq"]
            await b.close()
            acked = ["g-0"]
            await asyncio.to_thread(nats.stop)
            # sends during the outage: each unavailable, none acked
            for i in (1, 2):
                r = await send_id(a, "g", i, f"g-{i}")
                assert r["type"] == "error" and r["code"] == "unavailable", r
            await asyncio.to_thread(harness.restart, nats)
            for i in (1, 2):  # the client resends what was not acknowledged
                await resend_until_acked(a, "g", i, f"g-{i}", t(20))
                acked.append(f"g-{i}")
            r = await send_id(a, "g", 3, "g-3")
            assert r["type"] == "ack"
            acked.append("g-3")
            b2 = await Client.connect(A, "bob", name="bob2")
            rid = await b2.action("joinRoom", roomId="g", since=since)
            j = await b2.expect_reply(rid, "joined")
            # every acknowledged message was stored, so the resume recovers — and then
            # it must deliver every one of them, once
            assert j.get("recovered") is True, j
            want = acked[1:]
            deadline = time.monotonic() + t(10)
            while time.monotonic() < deadline:
                got = [f["id"] for f in b2.received("message", roomId="g")]
                if set(want) <= set(got):
                    break
                await asyncio.sleep(0.05)
            got = [f["id"] for f in b2.received("message", roomId="g")]
            assert sorted(got) == sorted(want), (j, got, want)  # none missing, none twice
        finally:
            await close_all(a, b, b2)
    run(body())


def test_api_push_answers_after_store_and_503_when_down(harness):
    nats, A = one_node(harness)

    async def body():
        b = await Client.connect(A, "bob")
        try:
            await b.join("api")
            path = "/v1/tenants/t1/rooms/api/messages"
            status, _, resp = await asyncio.to_thread(A.api, "POST", path,
                                                      {"message": "x", "id": "api-1"})
            assert status == 202 and json.loads(resp)["id"] == "api-1", (status, resp)
            status, _, resp = await asyncio.to_thread(A.api, "POST", path,
                                                      {"message": "x", "id": "api-1"})
            assert status == 202, (status, resp)  # a duplicate
            m = await b.expect("message", id="api-1", timeout=t(5))
            assert m.get("server") is True and m["seq"] > 0
            status, _, resp = await asyncio.to_thread(A.api, "POST", path,
                                                      {"message": "x", "id": "bad.id"})
            assert status == 400, (status, resp)
            await asyncio.to_thread(nats.stop)
            t0 = time.monotonic()
            status, _, resp = await asyncio.to_thread(A.api, "POST", path,
                                                      {"message": "y", "id": "api-2"},
                                                      None, ACK_TIMEOUT + t(5))
            took = time.monotonic() - t0
            assert status == 503 and json.loads(resp)["error"] == "unavailable", (status, resp)
            assert ACK_TIMEOUT - 0.1 <= took <= ACK_TIMEOUT + t(2), took
            await asyncio.to_thread(harness.restart, nats)
            deadline = time.monotonic() + t(20)
            while True:
                status, _, resp = await asyncio.to_thread(A.api, "POST", path,
                                                          {"message": "y", "id": "api-2"},
                                                          None, ACK_TIMEOUT + t(5))
                if status == 202:
                    break
                assert status == 503 and time.monotonic() < deadline, (status, resp)
                await asyncio.sleep(0.2)
            got = await b.expect("message", id="api-2", timeout=t(5))
            await b.expect_none("message", t(1), id="api-2", pred=lambda f: f is not got)
            assert len(b.received("message", id="api-1")) == 1
            assert len(b.received("message", id="api-2")) == 1
        finally:
            await close_all(b)
    run(body())
    assert history_ids(A, "api") == ["api-1", "api-2"]


def test_standalone_memory_history_dedupes_the_same_way(harness):
    node = harness.node("solo", args=node_args())

    async def body():
        a, b = [await c for c in alice_and_bob(node)]
        try:
            await a.join("s")
            await b.join("s")
            for _ in range(3):  # the first stores, the resends are duplicates
                r = await send_id(a, "s", {"k": 1}, "solo-1")
                assert r["type"] == "ack" and r["id"] == "solo-1", r
            got = await b.expect("message", id="solo-1", timeout=t(5))
            assert got["seq"] > 0
            await b.expect_none("message", t(1), id="solo-1", pred=lambda f: f is not got)
        finally:
            await close_all(a, b)
    run(body())
    assert history_ids(node, "s") == ["solo-1"]
    assert nh.node_metrics(node)["natter_history_dedup_total"] == 2

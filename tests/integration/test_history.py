"""Room history and gapless recovery (docs/history.md) against a real JetStream-enabled
nats-server: `seq` on every message frame, resume with `since` (replay, then live, no gap,
no duplicate, `recovered`), `history` paging over WebSocket and the HTTP API, a node killed
mid-stream, retention, concurrent senders on two nodes, the standalone memory history and
`error unavailable` (nothing delivered) when JetStream is unavailable.
"""

import asyncio
import json
import time
import urllib.parse

import natter_harness as nh
from natter_harness import Client, close_all, run, t


metrics = nh.node_metrics


def seqs(frames):
    return [f["seq"] for f in frames]


def assert_increasing(frames, what):
    s = seqs(frames)
    assert all(isinstance(x, int) and x > 0 for x in s), f"{what}: seq missing: {frames[:3]}"
    assert all(a < b for a, b in zip(s, s[1:])), f"{what}: seq not strictly increasing: {s}"


async def send_n(client, room, n, prefix):
    """Sends n messages, each acknowledged; returns their ids in sending order."""
    ids = []
    for i in range(n):
        ack = await client.say(room, {"n": i, "p": prefix})
        ids.append(ack["id"])
    return ids


async def collect(client, room, ids, timeout=None):
    """Waits for the `message` frames of `ids` (in any order) and returns them in the order
    they arrived."""
    want = set(ids)
    deadline = time.monotonic() + (timeout or t(15))
    while True:
        got = [f for f in client.received("message", roomId=room) if f["id"] in want]
        if len({f["id"] for f in got}) == len(want):
            return got
        if time.monotonic() > deadline:
            missing = want - {f["id"] for f in got}
            raise AssertionError(f"{client.name}: {len(missing)} of {len(want)} messages "
                                 f"missing after {timeout or t(15)}s")
        await asyncio.sleep(0.02)


async def rejoin(node, user, room, since, name=None):
    c = await Client.connect(node, user, name=name)
    rid = await c.action("joinRoom", roomId=room, since=since)
    j = await c.expect_reply(rid, "joined")
    return c, j


def messages_after(client, room, joined):
    """The message frames of `room` received after the `joined` frame."""
    idx = client.frames.index(joined)
    return [f for f in client.frames[idx + 1:] if f.get("type") == "message"
            and f.get("roomId") == room]


# ---------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------

def test_resume_replays_exactly_the_missed_messages_then_live(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        alice2 = None
        try:
            await alice.join("r")
            await bob.join("r")
            await nats.await_sub_count("natter.room.t1.r", 2)
            first = await send_n(bob, "r", 3, "before")
            seen = await collect(alice, "r", first)
            assert_increasing(seen, "live before the drop")
            last = seen[-1]["seq"]
            await alice.close()

            missed = await send_n(bob, "r", 50, "missed")
            # reconnect on the other node, and keep sending while the replay is read: those
            # must come after the replay, once each
            alice2, j = await rejoin(B, "alice", "r", last, name="alice2")
            assert j.get("recovered") is True, j
            during = await send_n(bob, "r", 10, "during")
            later = await send_n(bob, "r", 5, "later")
            await collect(alice2, "r", missed + during + later)
            got = messages_after(alice2, "r", j)
            ids = [f["id"] for f in got]
            assert ids == missed + during + later, \
                f"expected the 50 missed then the live ones, in order, once each; got " \
                f"{len(ids)} ({len(set(ids))} distinct)"
            assert_increasing(got, "replay + live")
            assert got[0]["seq"] > last
            assert all(f["message"]["p"] in ("missed", "during", "later") for f in got)
            await alice2.expect_none("message", 0.3, pred=lambda f: f["id"] in first)
            m = metrics(B)
            assert m.get("natter_history_replayed_total", 0) >= 50, m
            assert m.get('natter_history_resumes_total{recovered="true"}') == 1, m
        finally:
            await close_all(alice, bob, alice2)
    run(body())


def test_node_killed_mid_stream_clients_resume_elsewhere_without_gap(harness):
    nats, redis, (A, B) = harness.cluster(2)

    async def body():
        victim = await Client.connect(A, "vic")
        sender = await Client.connect(B, "sam")
        vic2 = None
        stop = asyncio.Event()
        sent = []
        try:
            await victim.join("k")
            await sender.join("k")
            await nats.await_sub_count("natter.room.t1.k", 2)

            async def pump():
                i = 0
                while not stop.is_set():
                    ack = await sender.say("k", {"i": i})
                    sent.append(ack["id"])
                    i += 1
                    await asyncio.sleep(0.01)
            task = asyncio.create_task(pump())
            await nh.async_wait_until(lambda: len(victim.received("message")) >= 20, t(10),
                                      what="the victim receiving the stream")
            await asyncio.to_thread(A.kill)  # SIGKILL mid-stream
            have = victim.received("message", roomId="k")
            assert_increasing(have, "before the kill")
            last = have[-1]["seq"]
            await asyncio.sleep(0.3)
            vic2, j = await rejoin(B, "vic", "k", last, name="vic2")
            assert j.get("recovered") is True, j
            await asyncio.sleep(0.5)
            stop.set()
            await task
            seen_before = {f["id"] for f in have}
            rest = [i for i in sent if i not in seen_before]
            await collect(vic2, "k", rest)
            got = messages_after(vic2, "k", j)
            assert [f["id"] for f in got] == rest, \
                f"after the kill: expected {len(rest)} messages in order once each, got " \
                f"{len(got)} ({len({f['id'] for f in got})} distinct)"
            assert_increasing(got, "resumed")
            assert got[0]["seq"] > last
            # nothing was lost overall: before + after = everything sent
            assert [f["id"] for f in have] + [f["id"] for f in got] == sent
        finally:
            stop.set()
            await close_all(victim, sender, vic2)
    run(body())


def test_since_older_than_retention_is_not_recovered(harness):
    nats, redis, (A,) = harness.cluster(1, args=("--history-max-per-room", "5"))

    async def body():
        alice = await Client.connect(A, "alice")
        bob = None
        try:
            await alice.join("ret")
            ids = await send_n(alice, "ret", 12, "x")
            frames = await collect(alice, "ret", ids)
            assert_increasing(frames, "live")
            old, newest = frames[0]["seq"], frames[-1]["seq"]

            bob, j = await rejoin(A, "bob", "ret", old, name="old")
            assert j.get("recovered") is False, f"seq {old} is past retention (5): {j}"
            await bob.expect_none("message", 0.3)  # nothing replayed: the client reloads
            # it still gets live messages
            a = await alice.say("ret", "live")
            m = await bob.expect("message", id=a["id"])
            assert m["seq"] > newest
            await bob.close()

            # up to date: recovered, nothing to replay
            bob, j = await rejoin(A, "bob", "ret", m["seq"], name="current")
            assert j.get("recovered") is True, j
            await bob.expect_none("message", 0.3)
            await bob.close()

            # within retention: the newer ones
            bob, j = await rejoin(A, "bob", "ret", frames[-3]["seq"], name="recent")
            assert j.get("recovered") is True, j
            got = await collect(bob, "ret", [frames[-2]["id"], frames[-1]["id"], a["id"]])
            assert [f["id"] for f in got] == [frames[-2]["id"], frames[-1]["id"], a["id"]]
            await bob.close()

            # a seq that never existed in this room
            bob, j = await rejoin(A, "bob", "ret", newest + 1_000_000, name="future")
            assert j.get("recovered") is False, j
            m = metrics(A)
            assert m.get('natter_history_resumes_total{recovered="false"}', 0) >= 2, m
        finally:
            await close_all(alice, bob)
    run(body())


def test_resume_within_recent_messages_is_answered_from_memory(harness):
    """A resume whose `since` is among the room's recent messages on the node
    (--history-recent, 4 here) replays them from memory; one older than those is read from
    JetStream, with the same order and `recovered`; one older than JetStream keeps (past
    --history-max-per-room) is answered `recovered: false`."""
    nats, redis, (A,) = harness.cluster(1, args=("--history-recent", "4",
                                                 "--history-max-per-room", "8"))

    async def body():
        alice = await Client.connect(A, "alice")
        bob = carol = dave = None
        try:
            await alice.join("mem")
            ids = await send_n(alice, "mem", 8, "x")
            frames = await collect(alice, "mem", ids)
            assert_increasing(frames, "live")

            # after the 6th: 7 and 8, from the 4 kept in memory
            bob, j = await rejoin(A, "bob", "mem", frames[5]["seq"], name="bob")
            assert j.get("recovered") is True, j
            got = await collect(bob, "mem", ids[6:])
            assert [f["id"] for f in got] == ids[6:]
            m = metrics(A)
            assert m.get("natter_history_resumes_from_memory_total") == 1, m
            assert m.get("natter_history_recent_bytes", 0) > 0, m

            # after the 2nd: older than what memory keeps (5..8), read from JetStream
            carol, j = await rejoin(A, "carol", "mem", frames[1]["seq"], name="carol")
            assert j.get("recovered") is True, j
            live = await alice.say("mem", "live")
            got = await collect(carol, "mem", ids[2:] + [live["id"]])
            assert [f["id"] for f in got] == ids[2:] + [live["id"]], "replay, then live, once each"
            assert_increasing(got, "from JetStream")
            await carol.expect_none("message", 0.3, pred=lambda f: f["id"] in ids[:2])
            m = metrics(A)
            assert m.get("natter_history_resumes_from_memory_total") == 1, m
            assert m.get('natter_history_resumes_total{recovered="true"}') == 2, m
            assert m.get("natter_history_replayed_total", 0) >= 2 + 6, m

            # 9 messages in the room now, 8 kept by JetStream: after the 1st is gone
            dave, j = await rejoin(A, "dave", "mem", frames[0]["seq"], name="dave")
            assert j.get("recovered") is False, j
            await dave.expect_none("message", 0.3)
            m = metrics(A)
            assert m.get('natter_history_resumes_total{recovered="false"}') == 1, m
            assert m.get("natter_history_resumes_from_memory_total") == 1, m
        finally:
            await close_all(alice, bob, carol, dave)
    run(body())


# ---------------------------------------------------------------------------------------
# History pages
# ---------------------------------------------------------------------------------------

async def check_paging(node, api_node):
    alice = await Client.connect(node, "alice")
    try:
        await alice.join("pg")
        ids = await send_n(alice, "pg", 120, "p")
        frames = await collect(alice, "pg", ids)
        by_id = {f["id"]: f["seq"] for f in frames}

        rid = await alice.action("history", roomId="pg", limit=50)
        h1 = await alice.expect_reply(rid, "history")
        assert h1["roomId"] == "pg" and h1["hasMore"] is True, {k: h1[k] for k in h1 if k != "messages"}
        assert [m["id"] for m in h1["messages"]] == ids[70:], "newest 50, oldest first"
        assert_increasing(h1["messages"], "page 1")
        assert all(m["seq"] == by_id[m["id"]] for m in h1["messages"])
        m0 = h1["messages"][0]
        assert m0["userId"] == "alice" and m0["message"] == {"n": 70, "p": "p"}, m0
        assert isinstance(m0["timestamp"], int)

        rid = await alice.action("history", roomId="pg", limit=50,
                                 before=h1["messages"][0]["seq"])
        h2 = await alice.expect_reply(rid, "history")
        assert [m["id"] for m in h2["messages"]] == ids[20:70] and h2["hasMore"] is True
        rid = await alice.action("history", roomId="pg", limit=50,
                                 before=h2["messages"][0]["seq"])
        h3 = await alice.expect_reply(rid, "history")
        assert [m["id"] for m in h3["messages"]] == ids[:20] and h3["hasMore"] is False

        # default limit 50; an unknown room is an empty page
        rid = await alice.action("history", roomId="pg")
        h = await alice.expect_reply(rid, "history")
        assert len(h["messages"]) == 50
        rid = await alice.action("history", roomId="nothing-here")
        h = await alice.expect_reply(rid, "history")
        assert h["messages"] == [] and h["hasMore"] is False

        # the HTTP API serves the same pages
        q = urllib.parse.urlencode({"limit": 30, "before": h1["messages"][0]["seq"]})
        status, _, body = await asyncio.to_thread(
            api_node.api, "GET", f"/v1/tenants/t1/rooms/pg/messages?{q}")
        assert status == 200, body
        page = json.loads(body)
        assert page["tenantId"] == "t1" and page["roomId"] == "pg", page.keys()
        assert [m["id"] for m in page["messages"]] == ids[40:70] and page["hasMore"] is True
        status, _, body = await asyncio.to_thread(
            api_node.api, "GET", "/v1/tenants/t1/rooms/pg/messages?limit=abc")
        assert status == 400, body
        status, _, body = await asyncio.to_thread(
            api_node.api, "GET", "/v1/tenants/t1/rooms/pg/messages", None, "")
        assert status == 401, body
        # bad input: limit must be positive
        rid = await alice.action("history", roomId="pg", limit=0)
        await alice.expect_error("bad_request", rid)
    finally:
        await alice.close()


def test_history_paging_jetstream(cluster):
    nats, _redis, A, B = cluster
    run(check_paging(A, B))


def test_history_paging_standalone_memory(harness):
    node = harness.node("solo")
    run(check_paging(node, node))


# ---------------------------------------------------------------------------------------
# Sequences across nodes
# ---------------------------------------------------------------------------------------

def test_seq_strictly_increasing_with_concurrent_senders_on_two_nodes(cluster):
    nats, _redis, A, B = cluster

    async def body():
        sa = await Client.connect(A, "sa")
        sb = await Client.connect(B, "sb")
        try:
            await sa.join("c")
            await sb.join("c")
            await nats.await_sub_count("natter.room.t1.c", 2)

            async def burst(c, tag):
                acks = await asyncio.gather(*(c.say("c", {"t": tag, "i": i}) for i in range(150)))
                return [a["id"] for a in acks]
            ia, ib = await asyncio.gather(burst(sa, "a"), burst(sb, "b"))
            everything = ia + ib
            got_a = await collect(sa, "c", everything)
            got_b = await collect(sb, "c", everything)
            for got, who in ((got_a, "on A"), (got_b, "on B")):
                assert len(got) == 300 and len({f["id"] for f in got}) == 300, who
                assert_increasing(got, who)
            # both nodes agree on every message's position
            assert {f["id"]: f["seq"] for f in got_a} == {f["id"]: f["seq"] for f in got_b}
        finally:
            await close_all(sa, sb)
    run(body())


# ---------------------------------------------------------------------------------------
# Modes and outages
# ---------------------------------------------------------------------------------------

def test_history_off_has_no_seq(harness):
    nats, redis, (A,) = harness.cluster(1, args=("--history", "off"))

    async def body():
        c = await Client.connect(A, "alice")
        try:
            await c.join("off")
            ack = await c.say("off", "x")
            m = await c.expect("message", id=ack["id"])
            assert "seq" not in m, m
            rid = await c.action("history", roomId="off")
            await c.expect_error("not_found", rid)
        finally:
            await c.close()
    run(body())
    status, _, _ = A.api("GET", "/v1/tenants/t1/rooms/off/messages")
    assert status == 404


def test_jetstream_unavailable_answers_unavailable_not_live_only(harness):
    nats = harness.nats(jetstream=False)
    redis = harness.redis()
    A = harness.node("A", nats=nats, redis=redis, args=("--ack-timeout", "1"))
    B = harness.node("B", nats=nats, redis=redis, args=("--ack-timeout", "1"))

    async def body():
        a = await Client.connect(A, "alice")
        b = await Client.connect(B, "bob")
        try:
            await a.join("lo")
            await b.join("lo")
            await nats.await_sub_count("natter.room.t1.lo", 2)
            t0 = time.monotonic()
            rids = [await a.action("sendMessage", roomId="lo", message={"i": i}, id=f"lo{i}")
                    for i in range(3)]
            for rid in rids:  # never stored, so never acknowledged nor delivered
                await a.expect_error("unavailable", rid, timeout=t(5))
            assert time.monotonic() - t0 < 1 + t(3)
            await b.expect_none("message", 0.5, roomId="lo")
            assert not a.received("ack")
            rid = await b.action("history", roomId="lo")
            await b.expect_error("internal", rid)
            # a resume is answered, not recovered
            rid = await b.action("joinRoom", roomId="lo2", since=5)
            j = await b.expect_reply(rid, "joined")
            assert j.get("recovered") is False, j
        finally:
            await close_all(a, b)
    run(body())
    m = metrics(A)
    assert m.get("natter_history_storing") == 0, m
    assert m.get("natter_history_unavailable_total") == 3, m
    assert m.get("natter_history_live_only_total") == 0, m
    assert any(l.get("msg") == "history stream unavailable" for l in A.log_lines_json())


def test_standalone_resume_with_memory_history(harness):
    node = harness.node("solo", args=("--history-max-per-room", "100"))

    async def body():
        alice = await Client.connect(node, "alice")
        bob = await Client.connect(node, "bob")
        alice2 = None
        try:
            await alice.join("m")
            await bob.join("m")
            first = await collect(alice, "m", await send_n(bob, "m", 2, "a"))
            await alice.close()
            missed = await send_n(bob, "m", 30, "b")
            alice2, j = await rejoin(node, "alice", "m", first[-1]["seq"], name="alice2")
            assert j.get("recovered") is True, j
            live = await send_n(bob, "m", 3, "c")
            await collect(alice2, "m", missed + live)
            got = messages_after(alice2, "m", j)
            assert [f["id"] for f in got] == missed + live
            assert_increasing(got, "standalone replay + live")
        finally:
            await close_all(alice, bob, alice2)
    run(body())

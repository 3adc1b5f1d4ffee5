"""Presence across the cluster with real nats-server, redis-server and natter-node
processes: multi-tab users across nodes, a kill -9'd node reaped by the survivors, a
silent client closed by the idle timeout, a Redis restart, and the steady-state Redis
command rate with 1,000 idle users."""

import asyncio
import json
import re
import time

from natter_harness import Client, RawWS, close_all, run, t


def member_ids(frame):
    return sorted(m["userId"] if isinstance(m, dict) else m for m in frame["members"])


def presence_events(client, status=None):
    return [(f["roomId"], f["userId"]) for f in client.received("presence")
            if status is None or f["status"] == status]


async def members(client, room=None):
    """Every member, walking the pages of `presence` (docs/presence.md)."""
    fields = {"roomId": room} if room else {}
    out, cursor = set(), None
    for _ in range(1000):
        if cursor:
            fields["cursor"] = cursor
        rid = await client.action("presence", **fields)
        page = await client.expect_reply(rid, "members")
        out.update(member_ids(page))
        cursor = page.get("cursor")
        if not cursor:
            return sorted(out)
    raise AssertionError("presence pages never ended")


async def connect_many(node, users, rooms_of, tenant="t1", batch=50):
    """Connects one client per user to `node` and joins it to rooms_of(user)."""
    out = []

    async def one(u):
        c = await Client.connect(node, u, tenant=tenant, name=f"{u}@{node.name}")
        for r in rooms_of(u):
            await c.join(r)
        return c
    for i in range(0, len(users), batch):
        out += await asyncio.gather(*(one(u) for u in users[i:i + batch]))
    return out


def commandstats(redis):
    """Total calls per command from INFO commandstats."""
    raw = redis.command("INFO", "commandstats").decode("utf-8", "replace")
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"cmdstat_([a-z|_]+):calls=(\d+)", raw)}


# ---------------------------------------------------------------------------------------


def test_multi_tab_user_across_nodes(cluster):
    _nats, _redis, A, B = cluster

    async def body():
        carol = await Client.connect(A, "carol")
        dave = await Client.connect(B, "dave")
        tab1 = await Client.connect(A, "alice", name="alice-A")
        tab2 = await Client.connect(B, "alice", name="alice-B")
        try:
            await carol.join("lobby")
            await dave.join("lobby")
            await tab1.join("lobby")
            await tab2.join("lobby")
            for obs in (carol, dave):
                await obs.expect("presence", userId="alice", status="online", timeout=t(5))
            await tab1.close()
            await asyncio.sleep(1.0)
            for obs in (carol, dave):
                assert presence_events(obs, "offline") == [], \
                    f"{obs.name}: alice still has a tab on B: {obs.frames}"
                assert await members(obs, "lobby") == ["alice", "carol", "dave"]
            await tab2.close()
            for obs in (carol, dave):
                await obs.expect("presence", userId="alice", status="offline", timeout=t(5))
            await asyncio.sleep(1.0)
            for obs in (carol, dave):
                assert presence_events(obs, "offline") == [("lobby", "alice")], obs.frames
                assert presence_events(obs, "online").count(("lobby", "alice")) == 1
                assert await members(obs, "lobby") == ["carol", "dave"]
        finally:
            await close_all(carol, dave, tab1, tab2)
    run(body())


def test_kill_9_node_offline_within_5s_exactly_once(harness):
    """A holds 100 users in 10 rooms. u0..u19 also sit in the same room on B (stay online);
    u20..u29 have a connection on B in another room only (go offline in their A room);
    u30..u99 are only on A. Observers on B and C are in every room."""
    _nats, _redis, (A, B, C) = harness.cluster(3)
    rooms = [f"room{i}" for i in range(10)]
    users = [f"u{i}" for i in range(100)]

    def room_of(i):
        return rooms[i % 10]

    async def body():
        obs = [await Client.connect(B, "obsB"), await Client.connect(C, "obsC")]
        on_a = on_b = []
        try:
            for o in obs:
                for r in rooms:
                    await o.join(r)
            on_a = await connect_many(A, users, lambda u: [room_of(int(u[1:]))])
            on_b = await connect_many(
                B, users[:30],
                lambda u: [room_of(int(u[1:]) + (1 if int(u[1:]) >= 20 else 0))])
            expected = {(room_of(i), f"u{i}") for i in range(20, 100)}
            await asyncio.sleep(1.0)  # let the online events settle before counting
            before = [len(presence_events(o, "offline")) for o in obs]
            assert before == [0, 0], [presence_events(o, "offline") for o in obs]

            t0 = time.monotonic()
            A.kill()
            deadline = t0 + t(5.0)
            while time.monotonic() < deadline and \
                    any(len(presence_events(o, "offline")) < len(expected) for o in obs):
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
            print(f"offline events for {len(expected)} user-rooms after {took:.2f}s")
            await asyncio.sleep(1.5)  # duplicates or false offlines would show up by now
            for o in obs:
                got = presence_events(o, "offline")
                assert len(got) == len(set(got)), f"{o.name}: duplicate offline events"
                assert set(got) == expected, \
                    f"{o.name}: missing {sorted(expected - set(got))[:10]}, " \
                    f"false {sorted(set(got) - expected)[:10]}"
            assert took <= t(5.0), f"offline events took {took:.2f}s after kill -9"

            # the survivors agree on every room
            for r in rooms:
                want = sorted(["obsB", "obsC"] +
                              [f"u{i}" for i in range(20) if room_of(i) == r] +
                              [f"u{i}" for i in range(20, 30) if room_of(i + 1) == r])
                assert await members(obs[0], r) == want, r
                assert await members(obs[1], r) == want, r
        finally:
            await close_all(*obs, *on_b)
            for c in on_a:
                c._task.cancel()
    run(body(), timeout=t(90))


def test_silent_client_closed_and_reported_offline(harness):
    _nats, _redis, (A, B) = harness.cluster(2, args=("--ping-interval", "1",
                                                     "--idle-timeout", "3"))

    async def body():
        # websockets answers pings by itself, so this observer outlives the timeout
        obs = await Client.connect(B, "watcher")
        raw = None
        try:
            await obs.join("quiet")
            raw = await asyncio.to_thread(RawWS, A.port, f"/ws?token={A.token('mute')}")
            await asyncio.to_thread(raw.recv_json)  # welcome
            raw.send_text(json.dumps({"action": "joinRoom", "roomId": "quiet"}))
            t0 = time.monotonic()
            # from now on it never reads, never answers a ping, never sends
            await obs.expect("presence", userId="mute", status="online", timeout=t(5))
            f = await obs.expect("presence", userId="mute", status="offline", timeout=t(8))
            took = time.monotonic() - t0
            assert 2.5 <= took <= t(3 + 2.5), f"silent client reported offline after {took:.1f}s"
            assert f["roomId"] == "quiet"
            await obs.assert_open()
            assert await members(obs, "quiet") == ["watcher"]
            await obs.expect_none("presence", 1.0, status="offline", userId="watcher")
        finally:
            if raw:
                raw.close()
            await close_all(obs)
    run(body())


def test_redis_restart_presence_whole_again(cluster):
    _nats, redis, A, B = cluster

    async def body():
        carol = await Client.connect(A, "carol")
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        dave = None
        try:
            for c in (carol, alice, bob):
                await c.join("p")
            await carol.expect("presence", userId="bob", status="online", timeout=t(5))
            seen = len(carol.received("presence"))

            redis.stop()
            await asyncio.sleep(1.0)
            # while Redis is down: a join still works locally (members unknown)
            dave = await Client.connect(B, "dave")
            j = await dave.join("p")
            assert "dave" in member_ids(j)
            await alice.leave("p")  # the node still answers; presence catches up later
            await alice.join("p")
            redis.start()
            redis.wait_ready()

            t0 = time.monotonic()
            want = ["alice", "bob", "carol", "dave"]
            while True:
                try:
                    if await members(carol, "p") == want and await members(bob, "p") == want:
                        break
                except AssertionError:
                    pass  # "presence unavailable" until the node has reconnected
                assert time.monotonic() - t0 < t(8), "presence not whole after Redis restart"
                await asyncio.sleep(0.2)
            print(f"presence whole {time.monotonic() - t0:.2f}s after Redis came back")
            assert await members(alice, None) == want  # the tenant's online users
            # dave's join was news (made while Redis was away); nobody else's state was
            await carol.expect("presence", userId="dave", status="online", timeout=t(5))
            await asyncio.sleep(0.5)
            extra = [f for f in carol.received("presence")[seen:]
                     if f["userId"] != "dave"]
            assert not [f for f in extra if f["status"] == "offline" and
                        f["userId"] in ("bob", "carol")], extra
            for n in (A, B):
                assert n.get("/readyz")[0] == 200
        finally:
            await close_all(carol, alice, bob, dave)
    run(body())


def test_steady_state_redis_commands_do_not_grow_with_connections(cluster):
    _nats, redis, A, B = cluster
    n_users = 1000

    async def body():
        clients = []
        try:
            users = [f"idle{i}" for i in range(n_users)]
            clients += await connect_many(A, users[:n_users // 2],
                                          lambda u: [f"r{int(u[4:]) % 20}"], batch=100)
            clients += await connect_many(B, users[n_users // 2:],
                                          lambda u: [f"r{int(u[4:]) % 20}"], batch=100)
            assert len(await members(clients[0], None)) == n_users
            await asyncio.sleep(1.0)
            redis.command("CONFIG", "RESETSTAT")
            t0 = time.monotonic()
            await asyncio.sleep(10.0)
            stats = commandstats(redis)
            elapsed = time.monotonic() - t0
            stats.pop("config|resetstat", None)
            stats.pop("info", None)
            total = sum(stats.values())
            per_node = total / elapsed / 2
            print(f"{n_users} idle users on 2 nodes: {total} Redis commands in "
                  f"{elapsed:.1f}s = {per_node:.1f}/s per node (scripts' inner calls "
                  f"included): {stats}")
            assert per_node < 50, stats
            assert stats.get("evalsha", 0) <= 2 * (elapsed + 1) * 1.5, stats
        finally:
            await close_all(*clients)
    run(body(), timeout=t(100))

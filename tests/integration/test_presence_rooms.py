"""Presence in rooms filled at once and in large rooms, with real nats-server,
redis-server and natter-node processes: each member hears of each other user exactly once
(in its `joined` or as `presence online`, never both) when joins run concurrently on two
nodes; `joined` says how large the room is and where the member list continues; rooms
larger than --presence-max-members get no presence events (docs/presence.md "Large
rooms")."""

import asyncio

from natter_harness import Client, close_all, node_metrics, run, t


def ids(frame):
    return [m["userId"] for m in frame["members"]]


async def settle(clients, count, quiet=1.0, timeout=30.0):
    """Waits until no client received a frame for `quiet` seconds (after at least `count`
    frames in all arrived, or `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + t(timeout)
    last, since = -1, loop.time()
    while loop.time() < deadline:
        n = sum(len(c.frames) for c in clients)
        if n != last:
            last, since = n, loop.time()
        elif n >= count and loop.time() - since >= quiet:
            return
        await asyncio.sleep(0.05)


async def connect_users(nodes, users, tenant="t1"):
    return await asyncio.gather(*(
        Client.connect(nodes[i % len(nodes)], u, tenant=tenant, name=f"{u}")
        for i, u in enumerate(users)))


async def join_all_at_once(clients, room):
    """Every client sends joinRoom without waiting for anyone's answer; returns the
    `joined` of each."""
    rids = await asyncio.gather(*(c.action("joinRoom", roomId=room) for c in clients))
    return await asyncio.gather(*(c.expect_reply(rid, "joined", timeout=t(30))
                                  for c, rid in zip(clients, rids)))


def test_concurrent_joins_hear_each_user_once(cluster):
    """90 users on two nodes join one room at the same moment (below the 100 members a
    `joined` lists, so each `joined` is the whole room as the store ordered the joins).
    Every member must learn of every other user exactly once: listed in its `joined`, or
    announced online after it — 90 x 89 facts in all. Before the fix, members also got
    `presence online` for users their `joined` already listed (up to twice the frames)."""
    _, _, a, b = cluster
    users = [f"cj{i:02d}" for i in range(90)]

    async def go():
        clients = await connect_users([a, b], users)
        joined = await join_all_at_once(clients, "fill")
        await settle(clients, 0, quiet=t(1.5))
        dup, missing, unknown = [], [], []
        for c, u, j in zip(clients, users, joined):
            listed = set(ids(j))
            assert u in listed, (u, j)
            assert "cursor" not in j and "presenceEvents" not in j, j
            online = [f["userId"] for f in c.received("presence", roomId="fill")
                      if f["status"] == "online"]
            for v in users:
                if v == u:
                    if v in online:
                        unknown.append((u, "self"))
                    continue
                n = online.count(v) + (v in listed)
                if n > 1:
                    dup.append((u, v))
                elif n == 0:
                    missing.append((u, v))
            # an online event never comes before the member's own `joined`
            first_joined = next(i for i, f in enumerate(c.frames) if f.get("type") == "joined")
            early = [f for f in c.frames[:first_joined] if f.get("type") == "presence"]
            assert not early, (u, early)
        assert not dup, f"{len(dup)} pairs heard twice, e.g. {dup[:5]}"
        assert not missing, f"{len(missing)} pairs never heard, e.g. {missing[:5]}"
        assert not unknown, unknown
        # a member who joins later hears of nobody twice either, and everyone of it once
        late = await Client.connect(a, "late", name="late")
        lj = await late.join("fill")
        assert sorted(ids(lj)) == sorted(users + ["late"])
        await asyncio.gather(*(c.expect("presence", roomId="fill", userId="late",
                                        status="online") for c in clients))
        await late.expect_none("presence", t(0.5))
        await close_all(late, *clients)
    run(go())


def test_joined_reports_total_and_cursor(cluster):
    """A room of 140: `joined` lists a bounded first page (about 100), with `total` and a
    `cursor`; paging `presence` from that cursor lists the rest. (Redis keeps a hash of up
    to hash-max-listpack-entries fields in one block and scans it whole: lowered here so
    that 140 members are a hash table, as any room past a few hundred is.)"""
    _, redis, a, b = cluster
    redis.command("CONFIG", "SET", "hash-max-listpack-entries", "32")
    users = [f"pg{i:03d}" for i in range(140)]

    async def go():
        clients = await connect_users([a, b], users)
        for i in range(0, len(clients), 35):
            await join_all_at_once(clients[i:i + 35], "wide")
        c = await Client.connect(b, "pager", name="pager")
        j = await c.join("wide")
        assert j["total"] == 141, j
        assert len(j["members"]) <= 120, len(j["members"])
        assert j.get("cursor"), j
        assert "presenceEvents" not in j, j  # 141 <= the default 1000
        seen, cursor = set(ids(j)), j["cursor"]
        for _ in range(50):
            rid = await c.action("presence", roomId="wide", cursor=cursor)
            page = await c.expect_reply(rid, "members")
            seen.update(ids(page))
            cursor = page.get("cursor")
            if not cursor:
                break
        assert seen == set(users + ["pager"]), len(seen)
        await close_all(c, *clients)
    run(go())


def test_large_room_has_no_presence_events(harness):
    """--presence-max-members 5 on both nodes: the first five joins are announced; past
    five members `joined` says presenceEvents false and nobody hears of joins, leaves or
    closes; `presence` still lists everyone; a small room on the same nodes keeps its
    events; the counter of suppressed events moves."""
    _, _, (a, b) = harness.cluster(2, args=["--presence-max-members", "5"])
    users = [f"lr{i}" for i in range(8)]

    async def go():
        clients = []
        for i, u in enumerate(users):
            c = await Client.connect([a, b][i % 2], u, name=u)
            j = await c.join("big")
            assert j["total"] == i + 1, j
            if i < 5:
                assert "presenceEvents" not in j, j
                await asyncio.gather(*(o.expect("presence", roomId="big", userId=u,
                                                status="online") for o in clients))
            else:
                assert j["presenceEvents"] is False, j
            clients.append(c)
        await asyncio.sleep(t(0.5))
        for o in clients:
            late = [f for f in o.received("presence", roomId="big")
                    if f["userId"] in users[5:]]
            assert not late, (o.name, late)
        await clients[7].leave("big")
        await clients[6].ws.close()
        for o in clients[:6]:
            await o.expect_none("presence", t(1.0), pred=lambda f: f["userId"] in users[5:])
        rid = await clients[0].action("presence", roomId="big")
        page = await clients[0].expect_reply(rid, "members")
        assert sorted(ids(page)) == sorted(users[:6]), page
        # a small room beside it: events as before
        s1 = await Client.connect(a, "s1", name="s1")
        s2 = await Client.connect(b, "s2", name="s2")
        await s1.join("small")
        j2 = await s2.join("small")
        assert "presenceEvents" not in j2 and j2["total"] == 2, j2
        await s1.expect("presence", roomId="small", userId="s2", status="online")
        sup = sum(node_metrics(n).get("natter_presence_events_suppressed_total", 0)
                  for n in (a, b))
        assert sup >= 5, sup  # 3 joins, a leave, a close (some also dropped by receivers)
        await close_all(s1, s2, *clients[:6], clients[7])
    run(go())

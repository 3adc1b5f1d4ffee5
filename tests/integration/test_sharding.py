"""Sharding (docs/presence.md "Sharding", docs/history.md "Several streams"): presence over
two redis-servers chosen by tenant (--redis-shards) — tenants land on both, online and
offline events work, killing one Redis affects only its tenants, a dead node is reaped in
both shards, one Sentinel group with a primary per shard failing over one of them — and
room history over three JetStream streams (--history-streams 3) —
messages of many rooms spread over the streams, resume with `since` and `history` pages
unchanged."""

import asyncio
import time

import natter_harness as nh
from natter_harness import Client, close_all, run, t
from test_history import check_paging, collect, messages_after, rejoin, send_n
from test_sentinel import offline_events, presence_ok

MASK = (1 << 64) - 1


def shard_of(key, n):
    """The node's shard choice (nt_subject.h): jump consistent hash of 64-bit FNV-1a."""
    h = 0xcbf29ce484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001b3) & MASK
    b, j = -1, 0
    while j < n:
        b = j
        h = (h * 2862933555777941757 + 1) & MASK
        j = int((b + 1) * ((1 << 31) / ((h >> 33) + 1)))
    return b


# tenants of each shard among 2 (the unit test's fixed vector holds the same)
T0, T1 = "acme", "globex"
FAST = ("--node-ttl", "3", "--node-refresh", "1")


def sharded_cluster(harness, n=2, args=()):
    nats = harness.nats()
    redis = [harness.redis(), harness.redis()]
    shards = ",".join(r.url for r in redis)
    nodes = [harness.node("AB"[i], nats=nats, args=("--redis-shards", shards) + tuple(args),
                          wait=False, ready=True) for i in range(n)]
    for node in nodes:
        node.wait_ready(ready=True)
    return nats, redis, nodes


def keys(redis, pattern):
    """The key names of KEYS `pattern` (from the raw RESP reply)."""
    lines = redis.command("KEYS", pattern).decode().split("\r\n")
    return [l for l in lines[1:] if l and not l.startswith("$")]


def tenant_keys(redis, tenant):
    return keys(redis, f"natter:{{{tenant}}}:*")


def test_shard_choice_matches_the_nodes():
    assert shard_of(T0, 2) == 0 and shard_of(T1, 2) == 1
    assert [shard_of(x, 3) for x in ("acme", "globex", "initech")] == [0, 1, 2]


def test_presence_over_two_redis_tenants_isolated(harness):
    _nats, (r0, r1), (A, B) = sharded_cluster(harness, args=FAST)

    async def body():
        a0 = await Client.connect(A, "ann", tenant=T0)
        b0 = await Client.connect(B, "bea", tenant=T0)
        a1 = await Client.connect(A, "cid", tenant=T1)
        b1 = await Client.connect(B, "dan", tenant=T1)
        late = None
        try:
            for c in (a0, b0, a1, b1):
                await c.join("lobby")
            await a0.expect("presence", userId="bea", status="online", timeout=t(5))
            await a1.expect("presence", userId="dan", status="online", timeout=t(5))
            # each tenant's keys in its own shard only
            assert tenant_keys(r0, T0) and not tenant_keys(r1, T0)
            assert tenant_keys(r1, T1) and not tenant_keys(r0, T1)
            assert await presence_ok(a0, "lobby") == ["ann", "bea"]
            assert await presence_ok(b1, "lobby") == ["cid", "dan"]
            # the registry lookup by id (no tenant) finds a connection on either shard
            for node, c in ((A, a1), (B, a0)):
                status, _, _ = await asyncio.to_thread(
                    node.api, "GET", f"/@connections/{c.welcome['connectionId']}")
                assert status == 200, (c.name, status)
            m = nh.node_metrics(A)
            assert m['natter_presence_shard_connected{shard="0"}'] == 1, m
            assert m['natter_presence_shard_connected{shard="1"}'] == 1, m
            assert m['natter_presence_shard_ops_total{shard="1"}'] > 0, m

            # shard 1 goes away: its tenant's presence is unavailable, the other's is not
            r1.stop()
            await asyncio.sleep(1.0)
            assert await presence_ok(a1, "lobby") is None
            assert await presence_ok(a0, "lobby") == ["ann", "bea"]
            late = await Client.connect(B, "eve", tenant=T0)  # nodes stay ready
            await late.join("lobby")
            await a0.expect("presence", userId="eve", status="online", timeout=t(5))
            await b0.leave("lobby")
            await a0.expect("presence", userId="bea", status="offline", timeout=t(5))
            for n in (A, B):
                assert n.get("/readyz")[0] == 200
            m = nh.node_metrics(A)
            assert m['natter_presence_shard_connected{shard="1"}'] == 0, m
            assert m['natter_presence_shard_connected{shard="0"}'] == 1, m

            r1.start()  # empty: the nodes re-assert their tenants' presence
            r1.wait_ready()
            t0 = time.monotonic()
            while await presence_ok(a1, "lobby") != ["cid", "dan"]:
                assert time.monotonic() - t0 < t(10), "shard 1 not whole again"
                await asyncio.sleep(0.2)
            print(f"shard 1 whole {time.monotonic() - t0:.2f}s after its Redis came back")
            assert not offline_events(a1), a1.received("presence")
        finally:
            await close_all(a0, b0, a1, b1, late)
    run(body())


def test_dead_node_reaped_in_both_shards(harness):
    _nats, (r0, r1), (A, B) = sharded_cluster(harness, args=FAST)

    async def body():
        obs0 = await Client.connect(A, "obs0", tenant=T0)
        obs1 = await Client.connect(A, "obs1", tenant=T1)
        gone0 = await Client.connect(B, "gone0", tenant=T0)
        gone1 = await Client.connect(B, "gone1", tenant=T1)
        try:
            for c in (obs0, obs1, gone0, gone1):
                await c.join("lobby")
            await obs0.expect("presence", userId="gone0", status="online", timeout=t(5))
            await obs1.expect("presence", userId="gone1", status="online", timeout=t(5))
            B.kill()
            t0 = time.monotonic()
            await obs0.expect("presence", userId="gone0", status="offline", timeout=t(15))
            await obs1.expect("presence", userId="gone1", status="offline", timeout=t(15))
            print(f"both shards reaped the dead node in {time.monotonic() - t0:.2f}s")
            assert await presence_ok(obs0, "lobby") == ["obs0"]
            assert await presence_ok(obs1, "lobby") == ["obs1"]
            await asyncio.sleep(1.0)  # once each
            assert offline_events(obs0) == [("lobby", "gone0")]
            assert offline_events(obs1) == [("lobby", "gone1")]
            m = nh.node_metrics(A)
            assert m['natter_presence_shard_reaped_nodes_total{shard="0"}'] == 1, m
            assert m['natter_presence_shard_reaped_nodes_total{shard="1"}'] == 1, m
            for r in (r0, r1):  # nothing of B left in either shard
                assert not keys(r, "natter:*:node:B"), keys(r, "natter:*")
        finally:
            await close_all(obs0, obs1, gone0, gone1)
    run(body())


def streams(nats):
    j = nats._get_json("/jsz", streams="true")
    out = {}
    for acc in j.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            out[s["name"]] = s["state"]
    return out


def test_history_over_three_streams(harness):
    nats, redis, (A, B) = harness.cluster(2, args=("--history-streams", "3"))

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        alice2 = None
        try:
            rooms = [f"r{i}" for i in range(30)]
            for r in rooms:
                await bob.join(r)
            for r in rooms:
                await bob.say(r, {"r": r})
            st = streams(nats)
            assert "NATTER_ROOMS" not in st, st
            per = {k: st[f"NATTER_ROOMS_{k}"]["messages"] for k in range(3)}
            assert sum(per.values()) == 30 and all(v > 0 for v in per.values()), per
            want = {k: sum(1 for r in rooms if shard_of(f"t1.{r}", 3) == k) for k in range(3)}
            assert per == want, (per, want)
            m = nh.node_metrics(B)
            assert sum(m[f'natter_history_stream_stored_total{{stream="{k}"}}']
                       for k in range(3)) == 30, m
            assert all(m[f'natter_history_stream_storing{{stream="{k}"}}'] == 1
                       for k in range(3)), m

            # resume with since in a few rooms of each stream, on the other node
            await alice.join("r0")
            first = await send_n(bob, "r0", 3, "before")
            seen = await collect(alice, "r0", first)
            last = seen[-1]["seq"]
            await alice.close()
            missed = await send_n(bob, "r0", 40, "missed")
            alice2, j = await rejoin(B, "alice", "r0", last, name="alice2")
            assert j.get("recovered") is True, j
            later = await send_n(bob, "r0", 5, "later")
            await collect(alice2, "r0", missed + later)
            ids = [f["id"] for f in messages_after(alice2, "r0", j)]
            assert ids == missed + later, f"{len(ids)} ({len(set(ids))} distinct)"
        finally:
            await close_all(alice, bob, alice2)
        await check_paging(A, B)
    run(body())


def test_history_streams_change_warns_about_the_old_stream(harness):
    nats = harness.nats()
    redis = harness.redis()
    A = harness.node("A", nats=nats, redis=redis)

    async def body():
        c = await Client.connect(A, "u")
        try:
            await c.join("old")
            await c.say("old", "kept in NATTER_ROOMS")
        finally:
            await c.close()
    run(body())
    A.stop()
    B = harness.node("B", nats=nats, redis=redis, args=("--history-streams", "3"))
    nh.wait_until(lambda: any(l.get("msg", "").startswith("history stream of another")
                              for l in B.log_lines_json()), t(10), what="the warning")
    line = next(l for l in B.log_lines_json()
                if l.get("msg", "").startswith("history stream of another"))
    assert line["other"] == "NATTER_ROOMS" and line["messages"] == 1, line


def test_sentinel_shards_failover_of_one(harness):
    """One group of three sentinels monitoring two primaries, one presence shard each
    (--redis-master natter,natter1): kill -9 of shard 1's primary fails over to its
    replica; shard 1's tenant has presence again after the switch, shard 0's tenant never
    lost it, nobody is announced offline."""
    from test_sentinel import MASTER, Sentinel, command, start_redis, switch_watcher
    nats = harness.nats()
    p0 = start_redis(harness, "redis-p0")
    p1 = start_redis(harness, "redis-p1")
    r1 = start_redis(harness, "redis-r1", replica_of=p1)
    nh.wait_until(lambda: b"master_link_status:up" in command(r1.port, "INFO", "replication"),
                  t(10), what="replica in sync")
    extra = (f"sentinel monitor natter1 {nh.HOST} {p1.port} 2",
             "sentinel down-after-milliseconds natter1 1000",
             "sentinel failover-timeout natter1 3000")
    sentinels = []
    for i in range(3):
        log, _ = harness._log(f"sentinel{i}")
        sentinels.append(harness._start(Sentinel(log, p0.port, conf_extra=extra)).wait_ready())

    def agreed():
        for s in sentinels:
            for m in (MASTER, "natter1"):
                if command(s.port, "SENTINEL", "sentinels", m).count(b"runid") < 2:
                    return False
            if command(s.port, "SENTINEL", "replicas", "natter1").count(b"runid") < 1:
                return False
        return True
    nh.wait_until(agreed, t(20), interval=0.2, what="sentinels that know each other")
    args = ("--redis-sentinel", ",".join(f"{nh.HOST}:{s.port}" for s in sentinels),
            "--redis-master", f"{MASTER},natter1")
    A = harness.node("A", nats=nats, args=args, ready=True)
    B = harness.node("B", nats=nats, args=args, ready=True)

    async def body():
        a0 = await Client.connect(A, "ann", tenant=T0)
        b0 = await Client.connect(B, "bea", tenant=T0)
        a1 = await Client.connect(A, "cid", tenant=T1)
        b1 = await Client.connect(B, "dan", tenant=T1)
        everyone = (a0, b0, a1, b1)
        try:
            for c in everyone:
                await c.join("lobby")
            await a0.expect("presence", userId="bea", status="online", timeout=t(5))
            await a1.expect("presence", userId="dan", status="online", timeout=t(5))
            assert tenant_keys(p0, T0) and not tenant_keys(p0, T1)
            assert tenant_keys(p1, T1) and not tenant_keys(p1, T0)
            watch, writer = await switch_watcher(sentinels[-1].port)
            await asyncio.sleep(0.3)  # replication of the last writes
            p1.kill()
            await asyncio.sleep(0.3)
            assert await presence_ok(a0, "lobby") == ["ann", "bea"]  # shard 0 untouched
            switched_at, text = await asyncio.wait_for(watch, t(20))
            writer.close()
            assert "natter1" in text, text
            while not (await presence_ok(a1, "lobby") == ["cid", "dan"] and
                       await presence_ok(b1, "lobby") == ["cid", "dan"]):
                assert time.monotonic() - switched_at < t(10), "shard 1 not back"
                await asyncio.sleep(0.1)
            print(f"shard 1 answered {time.monotonic() - switched_at:.2f}s after its "
                  f"+switch-master")
            assert tenant_keys(r1, T1)  # the promoted replica holds shard 1 now
            assert await presence_ok(b0, "lobby") == ["ann", "bea"]
            await asyncio.sleep(1.0)
            for c in everyone:
                assert not offline_events(c), (c.name, c.received("presence"))
            for n in (A, B):
                assert n.alive() and n.get("/readyz")[0] == 200
        finally:
            await close_all(*everyone)
    run(body())

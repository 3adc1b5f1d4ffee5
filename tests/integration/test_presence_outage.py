"""Presence events survive a Redis outage: a 30 s outage of a Redis without persistence
(stopped, then an empty redis-server on the same port) while clients on two nodes leave
rooms, disconnect, join and change rooms. Afterwards every observer has exactly one
`offline` per user and room left during the outage (a user with tabs on both nodes too),
no `offline` for users who stayed, the joins made meanwhile announced `online`, and the
member lists right on both nodes."""

import asyncio
import os
import time

from natter_harness import Client, close_all, run, t
from test_sentinel import presence_ok as members

OUTAGE_S = float(os.environ.get("NATTER_OUTAGE_S", "30"))


def events(client, status):
    return sorted((f["roomId"], f["userId"]) for f in client.received("presence")
                  if f["status"] == status)


def test_leaves_during_30s_outage_announced_after_empty_restart(cluster):
    _nats, redis, A, B = cluster

    async def body():
        obs_a = await Client.connect(A, "obs-a")
        obs_b = await Client.connect(B, "obs-b")
        sam = await Client.connect(A, "sam")        # stays
        sue = await Client.connect(B, "sue")        # stays
        lena = await Client.connect(A, "lena")      # disconnects during the outage
        leo = await Client.connect(B, "leo")        # leaves lobby, joins side meanwhile
        max_a = await Client.connect(A, "max", name="max@A")  # two tabs, both close
        max_b = await Client.connect(B, "max", name="max@B")
        kim = await Client.connect(A, "kim")        # leaves side, comes back to it
        late = None
        everyone = [obs_a, obs_b, sam, sue, lena, leo, max_a, max_b, kim]
        try:
            for c in everyone:
                await c.join("lobby")
            for c in (obs_a, obs_b, lena, kim):
                await c.join("side")
            for obs in (obs_a, obs_b):
                for u in ("kim", "lena", "leo", "max", "sam", "sue"):
                    await obs.expect("presence", userId=u, roomId="lobby", status="online",
                                     timeout=t(5))
                await obs.expect("presence", userId="kim", roomId="side", status="online",
                                 timeout=t(5))
            await asyncio.sleep(0.5)
            before_off = {id(o): len(events(o, "offline")) for o in (obs_a, obs_b)}
            assert all(v == 0 for v in before_off.values())

            t_stop = time.monotonic()
            redis.stop()
            await asyncio.sleep(1.0)
            await lena.close()
            await leo.leave("lobby")
            await leo.join("side")
            await max_a.close()
            await asyncio.sleep(OUTAGE_S / 3)
            await max_b.close()
            await kim.leave("side")
            await kim.join("side")  # back before Redis returned: never offline
            late = await Client.connect(B, "late")
            await late.join("lobby")
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_stop)))
            redis.start()  # empty: no persistence (--save "" --appendonly no)
            redis.wait_ready()
            t_back = time.monotonic()

            want_lobby = ["kim", "late", "obs-a", "obs-b", "sam", "sue"]
            want_side = ["kim", "leo", "obs-a", "obs-b"]
            want_off = sorted([("lobby", "lena"), ("side", "lena"), ("lobby", "leo"),
                               ("lobby", "max")])
            while True:
                got = [events(o, "offline") for o in (obs_a, obs_b)]
                if all(g == want_off for g in got):
                    break
                assert time.monotonic() - t_back < t(15), \
                    f"offline events after the outage: {got}, want {want_off}"
                await asyncio.sleep(0.1)
            print(f"every offline announced {time.monotonic() - t_back:.2f}s after Redis "
                  f"came back (empty)")
            for o in (obs_a, obs_b):
                assert await members(o, "lobby") == want_lobby
                assert await members(o, "side") == want_side
            await asyncio.sleep(3.0)  # nothing more comes: no duplicate, no false offline
            for o in (obs_a, obs_b):
                assert events(o, "offline") == want_off, (o.name, o.frames)
                online = events(o, "online")
                assert ("lobby", "late") in online and ("side", "leo") in online, online
                for u in ("sam", "sue", "kim", "obs-a", "obs-b"):
                    assert (("lobby", u) not in events(o, "offline")), u
            for n in (A, B):
                assert n.get("/readyz")[0] == 200
        finally:
            await close_all(*everyone, late)
    run(body(), timeout=t(120) + OUTAGE_S)

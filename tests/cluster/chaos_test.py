"""chaos_test: natter under infrastructure faults, with message-level accounting.
tests/cluster/run.sh runs it in the `client` namespace after cluster_test.py, on the same
hosts (cluster_test.Cluster) plus a second Redis host: 3 clustered NATS servers with the
history stream at 3 replicas, Redis with Sentinel (a primary, a replica, a redis-sentinel
on each NATS host, quorum 2), 3 nodes with --history on --redis-sentinel, haproxy.

Every scenario runs the same traffic: members in rooms (through haproxy), each sending a
message to its room every TICK with its own message `id` (20 characters; a node that
takes client ids echoes it in `ack`, one that does not answers another id and the suite
then knows resends cannot be deduplicated). A message counts as acknowledged only when
its sender got `ack`; on `error` `unavailable`, or when the connection was lost before the
answer, it is resent with the same id if the node takes ids (natter.js does the same),
else given up. Members whose connection goes rejoin with `since` = the last seq they got;
in each NATS and Redis event one member per room is away 6-10 s across it (closes, then
rejoins with `since`); one user leaves for good during the fault (the "quitter").

For each scenario it counts:

  missing    acknowledged messages not in the stream (read back with `history`)
  lost       acknowledged messages a member that stayed or resumed with recovered: true
             never received (one per member and message)
  duplicated messages a member received more than once
  false off  offline events for users who never left (stayed, or came back on their own)
  missed off observers that stayed connected and did not get exactly one offline for
             the quitter
  ghosts     users the presence of a room still lists, 10 s after, who are gone
  recovery   longest time from a fault action until every member that was cut off has
             rejoined and every live node is ready (NATS, Redis) and storing history

The targets are 0 for every count (issue 19); a scenario fails when one is not met, with
its figures. A summary table is printed and written to $NTC_ART/chaos.md.

  node-kill9         kill -9 a node (node2); its members reconnect through haproxy and
                     resume
  nats-leader-kill9  kill -9 the NATS server leading the history stream
  nats-rolling       rolling restart of the three NATS servers (SIGTERM, start, stream
                     caught up, next)
  redis-failover     kill -9 the Redis primary; the sentinels promote the replica; the old
                     primary comes back (as a replica) at the end
  node-drain         SIGTERM a node (node3): its members are closed with 1001 after the
                     grace and resume elsewhere

Usage (inside the client namespace, see run.sh): chaos_test.py [-k NAME[,NAME]] [--long]
(--long: more members, faster traffic, longer runs).
"""

import asyncio
import collections
import os
import random
import secrets
import signal
import string
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_test as ct  # noqa: E402
from cluster_test import IP, NATS, NODES, Failed, check, log, nh  # noqa: E402

LONG = "--long" in sys.argv
if LONG:
    sys.argv.remove("--long")
ROOMS, PER_ROOM, TICK, STEADY = (6, 10, 0.5, 8.0) if LONG else (3, 6, 0.5, 3.0)
AWAY = (6.0, 10.0)          # seconds a member is away across a NATS / Redis event
RECOVERY_BOUND = 30.0       # a fault not recovered from within this fails the scenario
PRESENCE_BOUND = 10.0       # members lists must equal the connected users within this
MASTER = "natter"           # the sentinels' name of the primary
SENTINEL_PORT = 26379
IP["redis2"] = f"{ct.SUB}.21"
REDIS_HOSTS = ("redis", "redis2")
NODE_ARGS = ("--history", "on", "--history-replicas", "3",
             "--history-max-per-room", "100000")
ALNUM = string.ascii_letters + string.digits
RNG = random.Random(19)
TABLE = []                  # one row per scenario run


# ---------------------------------------------------------------------------------------
# Redis with Sentinel in the namespaces
# ---------------------------------------------------------------------------------------

def resp_strings(raw):
    """The bulk strings of a RESP reply (enough for the replies used here)."""
    lines = raw.split(b"\r\n")
    return [lines[i + 1].decode() for i, ln in enumerate(lines[:-1])
            if ln.startswith(b"$") and ln != b"$-1"]


class ChaosCluster(ct.Cluster):
    """cluster_test.Cluster with Redis behind Sentinel: a primary and a replica on hosts
    redis and redis2, a sentinel on each NATS host; nodes find the primary through them."""

    def __init__(self):
        super().__init__()
        self.redises = {}
        self.sentinels = {}

    def primary(self):
        """Host name of the primary the sentinels agree on (None when they do not)."""
        seen = set()
        for s in NATS:
            try:
                addr = resp_strings(ct.redis_cmd("SENTINEL", "get-master-addr-by-name",
                                                 MASTER, host=s, port=SENTINEL_PORT))
            except OSError:
                continue
            seen.add(addr[0] if addr else None)
        if len(seen) != 1:
            return None
        ip = seen.pop()
        return next((h for h in REDIS_HOSTS if IP[h] == ip), None)

    def start_redis(self, host, replica_of=None):
        d = os.path.join(ct.ART, f"{host}-data")
        os.makedirs(d, exist_ok=True)
        argv = ["redis-server", "--bind", IP[host], "--port", "6379", "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--dir", d]
        if replica_of:
            argv += ["--replicaof", IP[replica_of], "6379"]
        self.redises[host] = ct.NsProc(host, host, argv).start()
        if host == "redis":
            self.redis = self.redises[host]
        return self.redises[host]

    def start_sentinel(self, host, primary="redis"):
        conf = os.path.join(ct.ART, f"sentinel-{host}.conf")
        if not os.path.exists(conf):   # sentinels rewrite it: a restart keeps their state
            with open(conf, "w") as f:
                f.write(f"port {SENTINEL_PORT}\nbind {IP[host]}\nprotected-mode no\n"
                        f"dir {ct.ART}\nsentinel monitor {MASTER} {IP[primary]} 6379 2\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 3000\n"
                        f"sentinel parallel-syncs {MASTER} 1\n")
        self.sentinels[host] = ct.NsProc(f"sentinel-{host}", host,
                                         ["redis-sentinel", conf]).start()

    def ensure_redis(self):
        first = not self.redises
        prim = "redis" if first else (self.primary() or "redis")
        for h in (prim, *[h for h in REDIS_HOSTS if h != prim]):
            if not (self.redises.get(h) and self.redises[h].alive()):
                self.start_redis(h, None if h == prim else prim)
        nh.wait_until(lambda: all(ct.redis_cmd("PING", host=h).startswith(b"+PONG")
                                  for h in REDIS_HOSTS), 15, 0.1, "both Redis servers")
        for s in NATS:
            if not (self.sentinels.get(s) and self.sentinels[s].alive()):
                self.start_sentinel(s)

        def agreed():
            for s in NATS:
                try:
                    others = ct.redis_cmd("SENTINEL", "sentinels", MASTER, host=s,
                                          port=SENTINEL_PORT).count(b"runid")
                    reps = ct.redis_cmd("SENTINEL", "replicas", MASTER, host=s,
                                        port=SENTINEL_PORT).count(b"runid")
                except OSError:
                    return False
                if others < 2 or reps < 1:
                    return False
            return self.primary() is not None
        nh.wait_until(agreed, 30, 0.2, "3 sentinels that know each other, the replica and "
                      "one primary")
        prim = self.primary()
        for h in REDIS_HOSTS:
            if h != prim:
                nh.wait_until(lambda h=h: b"master_link_status:up" in
                              ct.redis_cmd("INFO", "replication", host=h), 15, 0.1,
                              f"{h} replicating {prim}")

    def redis_args(self):
        # --redis gives only user, password and db once --redis-sentinel is set
        return ["--redis", f"redis://{IP['redis']}:6379", "--redis-sentinel",
                ",".join(f"{IP[s]}:{SENTINEL_PORT}" for s in NATS), "--redis-master", MASTER]

    def flush_presence(self):
        ct.redis_cmd("FLUSHALL", host=self.primary())

    def stop_all(self):
        super().stop_all()
        for p in [*self.redises.values(), *self.sentinels.values()]:
            if p.alive():
                p.stop(signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# Members and the accounting
# ---------------------------------------------------------------------------------------

class Frames(list):
    """A client's frame list that hands every appended frame to `cb` as it arrives (the
    accounting is incremental: nothing rescans a connection's frames)."""

    def __init__(self, items, cb):
        super().__init__(items)
        self._cb = cb

    def append(self, f):
        super().append(f)
        self._cb(f)


class Msg:
    __slots__ = ("key", "id", "room", "t_sent", "t_ack", "attempts", "codes", "given_up")

    def __init__(self, key, room):
        self.key, self.room = key, room
        self.id = "".join(secrets.choice(ALNUM) for _ in range(20))
        self.t_sent = time.monotonic()
        self.t_ack = None
        self.attempts = 0
        self.codes = []
        self.given_up = False


class Run:
    """One scenario's members, traffic and ledger."""

    def __init__(self, name):
        self.name = name
        self.rooms = [f"{name}-{i}" for i in range(ROOMS)]
        self.members = []
        self.msgs = {}                  # key (user, k) -> Msg
        self.ids = None                 # does the node take client message ids?
        self.traffic = False
        self.t_traffic = None
        self.frozen = False

    def by_room(self, room):
        return [m for m in self.members if m.room == room]

    async def spawn(self):
        for i in range(ROOMS * PER_ROOM):   # one by one: haproxy's leastconn spreads them
            m = Member(self, f"{self.name}-u{i}", self.rooms[i % ROOMS])
            self.members.append(m)
            await m.open(15)
        for m in self.members:
            m.task = asyncio.create_task(m.life())

    def start_traffic(self):
        self.t_traffic = time.monotonic()
        self.traffic = True

    async def stop_traffic(self):
        """Stops sending, waits for the answers of what is in flight (and resends), then
        for delivery."""
        self.traffic = False
        await nh.async_wait_until(lambda: not any(m.sending or m.unacked or m.resend
                                                  for m in self.members if m.connected()),
                                  15, 0.1,
                                  "every sent message answered")
        await asyncio.sleep(1.5)

    async def away(self, who, lead=1.0):
        """`who` leave now and come back 6-10 s later (each its own time); returns after
        `lead` seconds (the fault comes then)."""
        for m in who:
            m.go_away(RNG.uniform(*AWAY))
        await asyncio.sleep(lead)

    def away_members(self):
        """One member per room among those that stay (not the quitter)."""
        return [next(m for m in self.by_room(r) if m.role == "stay") for r in self.rooms]

    async def back(self, who, bound=20):
        await nh.async_wait_until(lambda: all(m.connected() and not m.away_until for m in who),
                                  bound, 0.05, "the away members back")

    async def recovered(self, t_fault, live_nodes, observe=4.0, quiet=2.0,
                        bound=RECOVERY_BOUND):
        """Seconds from t_fault until the last moment something was not back: a member
        meant to be connected (not one sent away) not joined, or a live node not ready or
        not storing history. Polled every 0.2 s for at least `observe` s and until it has
        been all well for `quiet` s."""
        def nodes_ok():
            return all(ct.http_status(n, "/readyz") == 200 and
                       ct.node_metrics(n).get("natter_history_storing") == 1
                       for n in live_nodes)
        last_bad = None
        while True:
            now = time.monotonic()
            stuck = [m.user for m in self.members if m.wants_connection() and
                     not m.away_count and not m.connected()]
            ok = not stuck and await asyncio.to_thread(nodes_ok)
            if not ok:
                last_bad = now
            elif now - t_fault >= observe and now - (last_bad or t_fault) >= quiet:
                return max(0.0 if last_bad is None else last_bad + 0.2 - t_fault,
                           self.rejoined_after(t_fault))
            if now - t_fault > bound:
                raise Failed(f"not recovered {bound:g}s after the fault: members not back "
                             f"{stuck}, nodes {[(n, ct.http_status(n, '/readyz')) for n in live_nodes]}")
            await asyncio.sleep(0.2)

    def rejoined_after(self, t_fault):
        """Seconds from t_fault to the last rejoin of a member (not one sent away) whose
        connection was lost after t_fault (exact, from the members' own times)."""
        worst = 0.0
        for m in self.members:
            if m.away_count or m.role == "quit":
                continue
            lost = [t for t, _ in m.closes if t >= t_fault]
            if lost:
                back = [t for t, _, _ in m.joins if t >= lost[0]]
                worst = max(worst, (back[0] if back else time.monotonic()) - t_fault)
        return worst

    async def presence_check(self):
        """Waits until every room's member list, asked on each node that has a member of
        it, is exactly the connected members; returns (seconds, ghosts, missing) — the
        ghosts and missing users at the bound when it never converged."""
        t0 = time.monotonic()
        while True:
            ghosts, missing = set(), set()
            for r in self.rooms:
                want = {m.user for m in self.by_room(r) if m.connected()}
                askers = {}
                for m in self.by_room(r):
                    if m.connected():
                        askers.setdefault(m.node, m)
                for m in askers.values():
                    got = await m.members()
                    if got is None or len(got) != len(set(got)):
                        missing.add(f"{r}@{m.node}:unanswered-or-duplicate")
                        continue
                    ghosts |= set(got) - want
                    missing |= want - set(got)
            if not ghosts and not missing:
                return time.monotonic() - t0, set(), set()
            if time.monotonic() - t0 > PRESENCE_BOUND:
                return time.monotonic() - t0, ghosts, missing
            await asyncio.sleep(0.25)

    async def read_stream(self):
        """Every stored message of the scenario's rooms: Counter of (user, k), through the
        `history` action (pages of 500, newest first)."""
        c = await nh.Client.connect(ct.LB_URL, "reader", ct.TENANT, name="reader",
                                    token=nh.make_token("reader", ct.TENANT, secret=ct.SECRET))
        stored = collections.Counter()
        try:
            for r in self.rooms:
                before = 0
                while True:
                    fields = {"roomId": r, "limit": 500}
                    if before:
                        fields["before"] = before
                    rid = await c.action("history", **fields)
                    page = await c.expect_reply(rid, "history", timeout=10)
                    msgs = page.get("messages") or []
                    for e in msgs:
                        body = e.get("message")
                        if isinstance(body, dict) and "k" in body:
                            stored[(body.get("from"), body["k"])] += 1
                    if not page.get("hasMore") or not msgs:
                        break
                    before = msgs[0]["seq"]
        finally:
            await c.close()
        return stored

    async def close(self):
        for m in self.members:
            m.done = True
        await asyncio.gather(*(m.task for m in self.members if m.task), return_exceptions=True)
        await nh.close_all(*(m.conn for m in self.members))

    def freeze(self):
        self.frozen = True


class Member:
    """One user in one room with a reconnecting client through haproxy. Sends to the room
    every TICK while the traffic is on; counts every message it receives by (sender, k)."""

    def __init__(self, run, user, room):
        self.run, self.user, self.room = run, user, room
        self.role = "stay"              # stay | quit (leaves for good)
        self.conn = None
        self.node = None
        self.joins = []                 # (t, since, recovered) of every join
        self.closes = []                # (t, close code) of connections lost
        self.cut_at = None              # the connection was lost (not on purpose) at
        self.last_seq = None
        self.got = collections.Counter()
        self.events = []                # (t, user, status) presence events of the room
        self.waiters = {}               # requestId -> future
        self.sending = {}               # requestId -> Msg
        self.unacked = []               # Msgs to resend (with their id) on the next conn.
        self.resend = []                # (t due, Msg) after `unavailable`
        self.k = 0
        self.away_until = None
        self.away_count = 0
        self.quitting = False           # quit(): close now and do not come back
        self.done = False
        self.task = None

    def wants_connection(self):
        return not self.done and self.role != "quit" and not self.away_until

    def connected(self):
        return self.conn is not None and not self.conn.closed and self.node is not None

    # ---- frames
    def on_frame(self, f):
        t = f.get("type")
        rid = f.get("requestId")
        if rid is not None:
            w = self.waiters.pop(rid, None)
            if w is not None and not w.done():
                w.set_result(f)
            m = self.sending.pop(rid, None)
            if m is not None:
                self.answered(m, f)
        if self.run.frozen:
            return
        if t == "message" and f.get("roomId") == self.room:
            body = f.get("message")
            if isinstance(body, dict) and "k" in body:
                self.got[(body.get("from"), body["k"])] += 1
            seq = f.get("seq")
            if isinstance(seq, int) and (self.last_seq is None or seq > self.last_seq):
                self.last_seq = seq
        elif t == "presence" and f.get("roomId") == self.room:
            self.events.append((time.monotonic(), f.get("userId"), f.get("status")))

    def answered(self, m, f):
        if f.get("type") == "ack":
            m.t_ack = time.monotonic()
            if self.run.ids is None:
                self.run.ids = f.get("id") == m.id
                log(f"the node {'takes' if self.run.ids else 'does not take'} client message "
                    f"ids (ack id {f.get('id')!r} for {m.id!r})")
            return
        code = f.get("code")
        m.codes.append(code)
        if code == "unavailable" and self.run.ids is not False and m.attempts < 30:
            self.resend.append((time.monotonic() + 0.5, m))
        else:
            m.given_up = True

    # ---- requests
    async def request(self, action, timeout=5.0, **fields):
        c = self.conn
        rid = nh.Client.next_request_id()
        fut = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        try:
            await c.action(action, request_id=rid, **fields)
            return await asyncio.wait_for(fut, timeout)
        except Exception:  # noqa: BLE001 - closed or no answer
            return None
        finally:
            self.waiters.pop(rid, None)

    async def members(self):
        f = await self.request("presence", roomId=self.room)
        if not f or f.get("type") != "members":
            return None
        return [x.get("userId") for x in f.get("members", [])]

    async def send(self, m):
        c = self.conn
        rid = nh.Client.next_request_id()
        m.attempts += 1
        self.sending[rid] = m
        try:
            await c.action("sendMessage", request_id=rid, roomId=self.room,
                           message={"from": self.user, "k": m.key[1]}, id=m.id)
        except Exception:  # noqa: BLE001 - the connection is gone: life() handles it
            pass

    # ---- the connection
    async def open(self, bound):
        """Connects through haproxy and joins (with since when it has seen a seq)."""
        end = time.monotonic() + bound
        last = None
        while time.monotonic() < end and not self.done:
            c = None
            try:
                c = await nh.Client.connect(ct.LB_URL, self.user, ct.TENANT, name=self.user,
                                            token=nh.make_token(self.user, ct.TENANT,
                                                                secret=ct.SECRET))
                c.frames = Frames(c.frames, self.on_frame)
                self.conn, self.node = c, None
                since = self.last_seq
                fields = {"roomId": self.room} if since is None else \
                    {"roomId": self.room, "since": since}
                f = await self.request("joinRoom", timeout=5, **fields)
                if f and f.get("type") == "joined":
                    self.node = c.welcome.get("node")
                    self.joins.append((time.monotonic(), since, f.get("recovered")))
                    return c
                last = f
            except Exception as e:  # noqa: BLE001 - retried until the bound
                last = e
            if c is not None:
                await c.close()
            self.conn = None
            await asyncio.sleep(0.2)
        if not self.done:
            raise Failed(f"{self.user}: could not connect and join through haproxy: {last!r}")

    def go_away(self, seconds):
        self.away_until = time.monotonic() + seconds
        self.away_count += 1

    async def life(self):
        while not self.done:
            if not self.connected():
                if self.role == "quit":
                    return
                if self.away_until:
                    await asyncio.sleep(max(0.0, self.away_until - time.monotonic()))
                    self.away_until = None
                try:
                    await self.open(RECOVERY_BOUND)
                except Failed as e:
                    log(f"note: {e}")
                    return
                self.after_reconnect()
            await self.serve(self.conn)

    def after_reconnect(self):
        """Resends what the lost connection left unanswered, with the same ids, when the
        node takes ids (natter.js does); without ids a resend would be a new message."""
        pending, self.unacked = self.unacked, []
        for m in pending:
            if self.run.ids is not False and m.attempts < 30:
                self.resend.append((0.0, m))
            else:
                m.given_up = True

    async def serve(self, c):
        """Traffic and a heartbeat every second on connection `c` until it is lost
        (closed, or no heartbeat answer for 3 s), the member goes away or quits."""
        next_send = time.monotonic()
        hb = asyncio.create_task(self.heartbeats())
        try:
            while not self.done and not c.closed and not hb.done():
                now = time.monotonic()
                if self.away_until or self.role == "quit" and self.quitting:
                    await c.close()
                    break
                if self.run.traffic and now >= next_send:
                    self.k += 1
                    m = Msg((self.user, self.k), self.room)
                    self.run.msgs[m.key] = m
                    await self.send(m)
                    next_send = now + TICK
                due = [x for x in self.resend if x[0] <= now]
                if due:
                    self.resend = [x for x in self.resend if x[0] > now]
                    for _, m in due:
                        await self.send(m)
                await asyncio.sleep(0.05)
        finally:
            hb.cancel()
            await asyncio.gather(hb, return_exceptions=True)
        if not c.closed:          # a dead path: drop it at once
            try:
                c.ws.transport.abort()
            except Exception:  # noqa: BLE001
                pass
        if not self.away_until and not self.done and not self.quitting:
            self.cut_at = time.monotonic()
        self.closes.append((time.monotonic(), c.close_code))
        self.unacked += list(self.sending.values())
        self.sending.clear()
        self.node = None

    async def heartbeats(self):
        while True:
            await asyncio.sleep(1.0)
            f = await self.request("heartbeat", timeout=3)
            if f is None:
                return

    def quit(self):
        self.role, self.quitting = "quit", True


# ---------------------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------------------

def account(run, stored):
    """The scenario's counts (see the module docstring)."""
    acked = {k: m for k, m in run.msgs.items() if m.t_ack is not None}
    quitters = {m.user for m in run.members if m.role == "quit"}
    stayers = {m.user for m in run.members if m.role == "stay" and not m.away_count}
    missing = [k for k in acked if k not in stored]
    twice_stored = sum(n - 1 for n in stored.values() if n > 1)
    lost = dup = 0
    lost_by = {}
    unrecovered = []
    for r in run.rooms:
        want = {k for k, m in acked.items() if m.room == r}
        for mb in run.by_room(r):
            dup += sum(n - 1 for n in mb.got.values() if n > 1)
            if mb.role == "quit":
                continue
            rejoins = mb.joins[1:]
            if any(rec is not True for _, _, rec in rejoins):
                unrecovered.append(f"{mb.user}:{[rec for _, _, rec in rejoins]}")
                continue
            gone = want - set(mb.got)
            if gone:
                lost += len(gone)
                lost_by[mb.user] = len(gone)
    false_off = []
    missed_off = []
    for mb in run.members:
        offs = collections.Counter(u for _, u, st in mb.events if st == "offline")
        for u, n in offs.items():
            if u in stayers:
                false_off.append(f"{mb.user} got offline for {u} x{n}")
        if mb.role == "stay" and not mb.away_count and not mb.closes:
            for q in quitters:
                if any(x.room == mb.room for x in run.members if x.user == q) and offs[q] != 1:
                    missed_off.append(f"{mb.user}: {offs[q]} offline for {q}")
    why = collections.Counter()
    for m in run.msgs.values():
        if m.t_ack is None:
            why[m.codes[-1] if m.codes else
                "sender quit" if m.key[0] in quitters else "connection lost"] += 1
    rejoins = [rec for mb in run.members for _, _, rec in mb.joins[1:]]
    return {
        "never_acked": dict(why),
        "resumes": (rejoins.count(True), len(rejoins) - rejoins.count(True)),
        "sent": len(run.msgs), "acked": len(acked),
        "given_up": sum(1 for m in run.msgs.values() if m.t_ack is None),
        "resent": sum(1 for m in run.msgs.values() if m.attempts > 1),
        "missing": len(missing), "missing_ex": sorted(missing)[:6],
        "stored_twice": twice_stored, "lost": lost,
        "lost_by": dict(sorted(lost_by.items(), key=lambda x: -x[1])[:6]),
        "dup": dup, "unrecovered": unrecovered, "false_off": false_off,
        "missed_off": missed_off,
        "deliveries": sum(len(set(mb.got)) for mb in run.members),
    }


HIST_METRICS = ("outages", "published", "stored", "live_only", "duplicates_dropped")


def hist_metrics(nodes):
    """natter_history_<name>_total of each node, {node: {name: value}}."""
    out = {}
    for n in nodes:
        m = ct.node_metrics(n)
        out[n] = {k: m.get(f"natter_history_{k}_total", 0) for k in HIST_METRICS}
        out[n]["resumed_false"] = m.get('natter_history_resumes_total{recovered="false"}', 0)
    return out


async def drive(cl, name, fault):
    """The common body: members, steady traffic, `fault(cl, run)` (returns a dict with at
    least `recovery` and `live_nodes`), traffic after it, the ledger and the checks."""
    run = Run(name)
    t_start = time.monotonic()
    try:
        # a steady state first: the stream (created by the nodes) has a leader and both
        # followers current, every node stores
        await nh.async_wait_until(
            lambda: stream_cluster().get("leader") in NATS and
            len([r for r in (stream_cluster().get("replicas") or []) if r.get("current")]) == 2,
            20, 0.2, "the history stream led and both followers current")
        await nh.async_wait_until(lambda: ct.storing(NODES), 15, 0.2, "every node storing")
        await run.spawn()
        await asyncio.sleep(2.0)      # joins and their presence settle across the cluster
        hm0 = await asyncio.to_thread(hist_metrics, NODES)
        run.start_traffic()
        await asyncio.sleep(STEADY)
        info = await fault(cl, run)
        await asyncio.sleep(STEADY)
        await run.stop_traffic()
        t_pres, ghosts, absent = await run.presence_check()
        run.freeze()
        hm1 = await asyncio.to_thread(hist_metrics, info["live_nodes"])
        hist = {k: int(sum(hm1[n][k] - hm0[n][k] for n in hm1)) for k in hm1[next(iter(hm1))]}
        stored = await run.read_stream()
    finally:
        await run.close()
    a = account(run, stored)
    a.update(info, scenario=name, ghosts=sorted(ghosts), absent=sorted(absent),
             t_presence=t_pres, hist=hist, ids=run.ids,
             members=len(run.members), secs=time.monotonic() - t_start)
    TABLE.append(a)
    log(f"{a['members']} members in {ROOMS} rooms; {a['sent']} messages sent, {a['acked']} "
        f"acked ({a['resent']} resent with their id, {a['given_up']} never acked: "
        f"{a['never_acked']}); rejoins recovered true / not {a['resumes']}; "
        f"{a['deliveries']} distinct deliveries; history counters of the live nodes "
        f"{a['hist']}")
    log(f"missing from the stream {a['missing']} {a['missing_ex']}, stored twice "
        f"{a['stored_twice']}; lost {a['lost']} {a['lost_by']}, duplicated {a['dup']}; "
        f"not recovered {a['unrecovered']}; false offline {len(a['false_off'])} "
        f"{a['false_off'][:3]}; missed offline {a['missed_off'][:3]}; ghosts "
        f"{a['ghosts']} absent {a['absent']} (members converged in {t_pres:.2f}s); "
        f"recovery {a['recovery']:.2f}s; {a.get('detail', '')}")
    # The targets (issue 19). Nothing here is relaxed for today's behaviour.
    check(a["missing"] == 0, f"{a['missing']} acknowledged message(s) missing from the stream")
    check(a["lost"] == 0, f"{a['lost']} acknowledged deliveries lost to members that stayed "
                          f"or resumed with recovered: true ({a['lost_by']})")
    check(a["dup"] == 0, f"{a['dup']} duplicated deliveries")
    check(not a["false_off"], f"false offline: {a['false_off'][:4]}")
    check(not a["missed_off"], f"the quitter's offline: {a['missed_off'][:4]}")
    check(not ghosts and not absent, f"presence never converged: ghosts {sorted(ghosts)}, "
                                     f"absent {sorted(absent)}")
    check(a["acked"] > 0 and a["deliveries"] > 0, "no traffic")


def fmt_table(rows):
    out = ["| scenario | acked / sent | missing from stream | lost | duplicated | "
           "false offline | ghosts | recovery | rejoins recovered true / false |",
           "|---|---|---|---|---|---|---|---|---|"]
    for a in rows:
        out.append(f"| {a['scenario']} | {a['acked']} / {a['sent']} | {a['missing']} | "
                   f"{a['lost']} | {a['dup']} | {len(a['false_off'])} | "
                   f"{len(a['ghosts'])} | {a['recovery']:.1f} s | "
                   f"{a['resumes'][0]} / {a['resumes'][1]} |")
    return "\n".join(out)


def print_table(results):
    if not TABLE:
        return
    text = fmt_table(TABLE)
    form = "--long" if LONG else "CI form"
    ids = {a["ids"] for a in TABLE}
    print(f"chaos ({form}: {ROOMS} rooms x {PER_ROOM} members, a message each per {TICK:g}s; "
          f"client message ids {'taken' if ids == {True} else 'not taken' if ids == {False} else ids})")
    print(text)
    with open(os.path.join(ct.ART, "chaos.md"), "w") as f:
        f.write(text + "\n")


# ---------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------

def on_node(run, node):
    return [m for m in run.members if m.node == node]


async def node_fault(cl, run, victim, act):
    here = on_node(run, victim)
    check(len(here) >= 2, f"need 2+ members on {victim}, have {[m.node for m in run.members]}")
    here[0].role = "quit"           # its connection goes with the node; it does not return
    t0 = time.monotonic()
    await act()
    live = [n for n in NODES if n != victim]
    rec = await run.recovered(t0, live)
    return {"recovery": rec, "live_nodes": live,
            "detail": f"{len(here) - 1} members of {victim} resumed elsewhere"}


async def fault_kill9(cl, run):
    async def act():
        cl.nodes["node2"].kill()
    return await node_fault(cl, run, "node2", act)


async def fault_drain(cl, run):
    async def act():
        cl.nodes["node3"].popen.send_signal(signal.SIGTERM)
    info = await node_fault(cl, run, "node3", act)
    rc = await asyncio.to_thread(cl.nodes["node3"].popen.wait, ct.DRAIN_GRACE + ct.NODE_TTL + 10)
    check(rc == 0, f"node3 exited with {rc}")
    return info


def quit_one(run, away):
    q = next(m for m in run.members if m.role == "stay" and m not in away)
    q.quit()
    return q


def stream_cluster():
    return ct.js_stream_info().get("cluster", {})


async def fault_leader(cl, run):
    leader = await asyncio.to_thread(lambda: stream_cluster().get("leader"))
    check(leader in NATS, f"stream leader {leader!r}")
    away = run.away_members()
    await run.away(away)
    t0 = time.monotonic()
    cl.nats[leader].kill()
    await asyncio.sleep(0.3)
    quit_one(run, away)
    rec = await run.recovered(t0, NODES)
    await run.back(away)
    return {"recovery": rec, "live_nodes": NODES, "detail": f"killed {leader} (leader)"}


async def fault_rolling(cl, run):
    recs = []
    q = None
    for name in NATS:
        away = run.away_members()
        await run.away(away)
        t0 = time.monotonic()
        await asyncio.to_thread(cl.nats[name].stop, signal.SIGTERM)
        cl.start_nats(name)
        if q is None:
            q = quit_one(run, away)
        recs.append(await run.recovered(t0, NODES))
        await nh.async_wait_until(lambda: cl.nats_ready(name) and cl.routes(name) >= 2, 20,
                                  0.1, f"{name} back with its routes")
        await nh.async_wait_until(
            lambda: len([r for r in (stream_cluster().get("replicas") or [])
                         if r.get("current")]) == 2, 20, 0.2, "both stream followers current")
        await run.back(away)
    return {"recovery": max(recs), "live_nodes": NODES,
            "detail": "per server " + "/".join(f"{x:.2f}" for x in recs) + "s"}


async def fault_redis(cl, run):
    old = cl.primary()
    check(old in REDIS_HOSTS, f"the sentinels name no primary ({old!r})")
    away = run.away_members()
    await run.away(away)
    t0 = time.monotonic()
    cl.redises[old].kill()

    async def agreement():
        await nh.async_wait_until(lambda: cl.primary() not in (None, old), 20, 0.1,
                                  "the sentinels to agree on a new primary")
        return time.monotonic() - t0
    agree = asyncio.create_task(agreement())
    await asyncio.sleep(0.3)
    quit_one(run, away)
    rec = await run.recovered(t0, NODES)
    t_agree = await agree
    await run.back(away)
    # the old primary returns empty; the sentinels make it a replica, the nodes stay put
    new = cl.primary()
    cl.start_redis(old, replica_of=new)
    await nh.async_wait_until(lambda: b"master_link_status:up" in
                              ct.redis_cmd("INFO", "replication", host=old), 20, 0.2,
                              f"{old} back as a replica of {new}")
    return {"recovery": rec, "live_nodes": NODES,
            "detail": f"primary {old} -> {new}: sentinels agreed after {t_agree:.2f}s"}


def scenario(name, fault):
    async def body(cl):
        await drive(cl, name, fault)
    return body


CHAOS = [(name, scenario(name, fault)) for name, fault in (
    ("node-kill9", fault_kill9), ("nats-leader-kill9", fault_leader),
    ("nats-rolling", fault_rolling), ("redis-failover", fault_redis),
    ("node-drain", fault_drain))]


def stream_once(cl):
    """Deletes the stream earlier suites left (1 replica) once, before the first chaos
    scenario, while every server is fresh: the nodes create it with 3 replicas and every
    scenario then uses its own rooms in it. (Deleting and re-creating it between scenarios,
    right after a NATS server killed in the previous one came back, left nats-server
    2.9.10 stuck: "detected duplicate assignment for stream", that server never current
    with the meta leader again.)"""
    if not getattr(cl, "stream_reset", False):
        ct.js_delete_stream()
        cl.stream_reset = True


SETUP = {name: (NODE_ARGS, stream_once) for name, _ in CHAOS}


if __name__ == "__main__":
    ct.main(ChaosCluster(), CHAOS, SETUP, body_timeout=150 if LONG else 100,
            after=print_table)

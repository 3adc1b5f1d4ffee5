"""Redis high availability with Sentinel: three redis-sentinel processes, a primary and a
replica on free loopback ports, two natter nodes that find the primary through the
sentinels (--redis-sentinel/--redis-master). kill -9 of the primary: presence answers
again within 5 s of the sentinels' +switch-master, no node dies, a user who left during
the failover is gone (and announced offline once), users who stayed get no offline; the
old primary coming back empty (now a replica) is not written to. Also: the flags are
refused one without the other."""

import asyncio
import os
import socket
import statistics
import time

from natter_harness import HOST, Client, Redis, Proc, close_all, free_port, run, t, wait_until

MASTER = "natter"


def resp(*args):
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def command(port, *args, timeout=2.0):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(resp(*args))
        return s.recv(65536)


class Sentinel(Proc):
    def __init__(self, log_path, primary_port, conf_extra=()):
        self.port = free_port()
        conf = os.path.splitext(log_path)[0] + ".conf"
        with open(conf, "w") as f:
            f.write(f"port {self.port}\nbind {HOST}\ndir {os.path.dirname(log_path)}\n"
                    f"sentinel monitor {MASTER} {HOST} {primary_port} 2\n"
                    f"sentinel down-after-milliseconds {MASTER} 1000\n"
                    f"sentinel failover-timeout {MASTER} 3000\n"
                    f"sentinel parallel-syncs {MASTER} 1\n")
            for line in conf_extra:
                f.write(line + "\n")
        super().__init__("sentinel", ["redis-sentinel", conf], log_path)

    def wait_ready(self, timeout=None):
        def ok():
            assert self.alive(), f"redis-sentinel exited:\n{self.log_text(3000)}"
            try:
                return command(self.port, "PING").startswith(b"+PONG")
            except OSError:
                return False
        wait_until(ok, timeout or t(10), what=f"sentinel on {self.port}")
        return self


def start_redis(harness, name, replica_of=None):
    log, _ = harness._log(name)
    r = Redis(log)
    # its own directory: a replica's full sync writes dump.rdb there (not into the cwd,
    # where every later redis-server of the suite would load it)
    r.argv += ["--dir", os.path.dirname(log)]
    if replica_of is not None:
        r.argv += ["--replicaof", HOST, str(replica_of.port)]
    harness._start(r)
    r.wait_ready()
    return r


def topology(harness):
    """A primary, a replica in sync, three sentinels that know each other and the replica."""
    primary = start_redis(harness, "redis-primary")
    replica = start_redis(harness, "redis-replica", replica_of=primary)
    wait_until(lambda: b"master_link_status:up" in command(replica.port, "INFO", "replication"),
               t(10), what="replica in sync")
    sentinels = []
    for i in range(3):
        log, _ = harness._log(f"sentinel{i}")
        sentinels.append(harness._start(Sentinel(log, primary.port)).wait_ready())

    def agreed():
        for s in sentinels:
            others = command(s.port, "SENTINEL", "sentinels", MASTER).count(b"runid")
            replicas = command(s.port, "SENTINEL", "replicas", MASTER).count(b"runid")
            if others < 2 or replicas < 1:
                return False
        return True
    wait_until(agreed, t(20), interval=0.2, what="sentinels that know each other and the replica")
    return primary, replica, sentinels


def sentinel_args(sentinels):
    return ["--redis-sentinel", ",".join(f"{HOST}:{s.port}" for s in sentinels),
            "--redis-master", MASTER]


async def switch_watcher(port):
    """Subscribes to +switch-master on a sentinel; returns (task, writer); the task ends
    with time.monotonic() of the announcement and its text."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(resp("SUBSCRIBE", "+switch-master"))
    await writer.drain()

    async def bulk():
        line = await reader.readline()
        assert line.startswith(b"$"), line
        data = await reader.readexactly(int(line[1:]) + 2)
        return data[:-2].decode()

    async def wait():
        while True:
            head = await reader.readline()
            if not head:
                raise AssertionError("sentinel closed the subscription")
            assert head.startswith(b"*3"), head
            kind, _channel = await bulk(), await bulk()
            if kind == "message":
                return time.monotonic(), await bulk()
            await reader.readline()  # ":1" of the subscribe confirmation
    return asyncio.create_task(wait()), writer


async def presence_ok(client, room):
    rid = await client.action("presence", roomId=room)
    f = await client.expect(None, pred=lambda f: f.get("requestId") == rid, timeout=t(5))
    if f.get("type") != "members":
        return None
    return sorted(m["userId"] if isinstance(m, dict) else m for m in f["members"])


def offline_events(client):
    return [(f["roomId"], f["userId"]) for f in client.received("presence")
            if f["status"] == "offline"]


def failover_run(harness, nats, sentinel_down=False):
    primary, replica, sentinels = topology(harness)
    A = harness.node("A", nats=nats, args=sentinel_args(sentinels), ready=True)
    B = harness.node("B", nats=nats, args=sentinel_args(sentinels), ready=True)
    result = {}

    async def body():
        alice = await Client.connect(A, "alice")
        carol = await Client.connect(A, "carol")
        bob = await Client.connect(B, "bob")
        dave = await Client.connect(B, "dave")
        everyone = (alice, carol, bob, dave)
        try:
            for c in everyone:
                await c.join("lobby")
            for obs in (alice, bob):
                await obs.expect("presence", userId="dave", status="online", timeout=t(5))
            assert await presence_ok(alice, "lobby") == ["alice", "bob", "carol", "dave"]
            if sentinel_down:  # the first sentinel of every node's list: lookups and
                sentinels[0].kill()  # subscriptions move to the others; quorum 2 of 2
                await asyncio.sleep(1.0)
            watch, writer = await switch_watcher(sentinels[-1].port)
            await asyncio.sleep(0.3)  # replication of the last writes

            t_kill = time.monotonic()
            primary.kill()
            await asyncio.sleep(0.3)
            await dave.close()  # leaves during the failover
            switched_at, text = await asyncio.wait_for(watch, t(20))
            writer.close()
            want = ["alice", "bob", "carol"]
            ready = {}
            while len(ready) < 2:
                for name, c in (("A", alice), ("B", bob)):
                    if name not in ready and await presence_ok(c, "lobby") is not None:
                        ready[name] = time.monotonic()
                assert time.monotonic() - switched_at < t(15), \
                    f"presence not answering {t(15)}s after +switch-master: {ready}"
                await asyncio.sleep(0.05)
            result["agree_s"] = switched_at - t_kill
            result["answer_s"] = max(ready.values()) - switched_at
            # no ghost: dave is gone everywhere, and announced offline exactly once
            await wait_members([alice, bob], want)
            for obs in (alice, carol, bob):
                await obs.expect("presence", userId="dave", status="offline", timeout=t(5))
            # the old primary returns empty: the sentinels make it a replica; the nodes
            # stay on the new primary and nothing changes for the clients
            harness.restart(primary)
            await asyncio.sleep(2.5)
            await wait_members([alice, bob], want)
            for obs in (alice, carol, bob):
                assert offline_events(obs) == [("lobby", "dave")], (obs.name, obs.frames)
            for n in (A, B):
                assert n.alive() and n.get("/readyz")[0] == 200
        finally:
            await close_all(*everyone)
    run(body())
    return result


async def wait_members(clients, want):
    t0 = time.monotonic()
    while True:
        got = [await presence_ok(c, "lobby") for c in clients]
        if all(g == want for g in got):
            return
        assert time.monotonic() - t0 < t(8), f"members {got}, want {want}"
        await asyncio.sleep(0.2)


def test_sentinel_failover_presence_back_within_5s(harness):
    nats = harness.nats()
    runs = int(os.environ.get("NATTER_SENTINEL_RUNS", "1"))
    figures = []
    for i in range(runs):
        r = failover_run(harness, nats)
        figures.append(r["answer_s"])
        print(f"run {i}: sentinels agreed {r['agree_s']:.2f}s after kill -9, presence "
              f"answered on both nodes {r['answer_s']:.2f}s after +switch-master")
        if i + 1 < runs:  # a fresh topology for the next run
            for p in list(harness.procs):
                if p.name != "nats" and p.alive():
                    p.stop()
    print(f"failover: presence back {statistics.median(figures):.2f}s (median of {runs}) "
          f"after the sentinels agreed")
    assert max(figures) <= 5.0, figures


def test_sentinel_flags_go_together(harness):
    for args, needle in ((["--nats", "nats://127.0.0.1:1", "--redis-sentinel", "127.0.0.1:1"],
                          "--redis-sentinel and --redis-master go together"),
                         (["--nats", "nats://127.0.0.1:1", "--redis-master", "m"],
                          "--redis-sentinel and --redis-master go together"),
                         (["--nats", "nats://127.0.0.1:1", "--redis-sentinel", "h:99999",
                           "--redis-master", "m"], "--redis-sentinel must be host:port"),
                         (["--redis-sentinel", "127.0.0.1:1", "--redis-master", "m"],
                          "go together")):
        rc, out = harness.run_node(args, env={"NATTER_JWT_SECRET": "s" * 32})
        assert rc == 2, (args, out)
        assert needle in out, (args, out)
    rc, out = harness.run_node(["--nats", "nats://127.0.0.1:1", "--redis-master", "m",
                                "--max-message-bytes", "1"],
                               env={"NATTER_REDIS_SENTINEL": "127.0.0.1:1"})
    # the env form counts: past the pair check, refused by the next one
    assert rc == 2 and "--max-message-bytes" in out, out
    rc, out = harness.run_node(["--nats", "nats://127.0.0.1:1"],
                               env={"NATTER_REDIS_MASTER": "m"})
    assert rc == 2 and "go together" in out, out


class FakeSentinel:
    """A stand-in sentinel on a free port (threads): answers AUTH (recorded),
    SENTINEL get-master-addr-by-name with self.primary, and SUBSCRIBE; switch() pushes a
    +switch-master to the subscribers. For what real sentinels do not do on demand: name
    a replica."""

    def __init__(self, primary, password=None, user=None):
        import socketserver
        import threading
        self.primary = primary
        self.auths = []
        self.lookups = 0
        self.subscribers = []
        self.password, self.user = password, user
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                authed = fake.password is None
                while True:
                    args = self.read_command()
                    if args is None:
                        return
                    cmd = args[0].upper()
                    if cmd == "AUTH":
                        fake.auths.append(args[1:])
                        ok = (args[1:] == [fake.password] if fake.user is None
                              else args[1:] == [fake.user, fake.password])
                        authed = authed or ok
                        self.wfile.write(b"+OK\r\n" if ok else b"-WRONGPASS bad\r\n")
                    elif not authed:
                        self.wfile.write(b"-NOAUTH Authentication required.\r\n")
                    elif cmd == "SENTINEL":
                        fake.lookups += 1
                        h, p = fake.primary
                        self.wfile.write(resp(h, str(p)))
                    elif cmd == "SUBSCRIBE":
                        self.wfile.write(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master"
                                         b"\r\n:1\r\n")
                        fake.subscribers.append(self.wfile)
                    else:
                        self.wfile.write(b"-ERR unknown\r\n")
                    self.wfile.flush()

            def read_command(self):
                head = self.rfile.readline()
                if not head.startswith(b"*"):
                    return None
                out = []
                for _ in range(int(head[1:])):
                    n = int(self.rfile.readline()[1:])
                    out.append(self.rfile.read(n + 2)[:-2].decode())
                return out

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def switch(self, new):
        old, self.primary = self.primary, new
        text = f"{MASTER} {old[0]} {old[1]} {new[0]} {new[1]}".encode()
        msg = (b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n"
               % (len(text), text))
        for w in list(self.subscribers):
            try:
                w.write(msg)
                w.flush()
            except OSError:
                pass

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_replica_named_by_sentinel_is_refused_then_switch_followed(harness):
    """A sentinel naming a replica: the node refuses it (ROLE), stays not ready, writes
    nothing, keeps asking; a +switch-master to the real primary makes it ready at once.
    The sentinel connections authenticate with --redis-sentinel-user/-password."""
    nats = harness.nats()
    primary = start_redis(harness, "redis-primary")
    replica = start_redis(harness, "redis-replica", replica_of=primary)
    fake = FakeSentinel((HOST, replica.port), password="s3nt pw", user="watcher")
    try:
        node = harness.node("A", nats=nats, wait=False,
                            args=["--redis-sentinel", f"{HOST}:{fake.port}",
                                  "--redis-master", MASTER,
                                  "--redis-sentinel-user", "watcher"],
                            env={"NATTER_REDIS_SENTINEL_PASSWORD": "s3nt pw"})
        wait_until(lambda: node.alive() and node.get("/healthz", timeout=1)[0] == 200, t(10),
                   what="node up")
        wait_until(lambda: fake.lookups >= 3, t(10), what="the node asking again")
        assert node.get("/readyz")[0] == 503
        assert "not the primary" in node.log_text()
        assert command(primary.port, "DBSIZE") == b":0\r\n"  # nothing written anywhere
        assert fake.auths and all(a == ["watcher", "s3nt pw"] for a in fake.auths), fake.auths
        t0 = time.monotonic()
        fake.switch((HOST, primary.port))
        wait_until(lambda: node.get("/readyz", timeout=1)[0] == 200, t(5), interval=0.02,
                   what="ready on the primary")
        print(f"ready {time.monotonic() - t0:.2f}s after +switch-master")
        assert command(primary.port, "DBSIZE") != b":0\r\n"  # the liveness record
    finally:
        fake.close()


def test_sentinel_wrong_password_is_not_ready(harness):
    nats = harness.nats()
    primary = start_redis(harness, "redis-primary")
    fake = FakeSentinel((HOST, primary.port), password="right")
    try:
        node = harness.node("A", nats=nats, wait=False,
                            args=["--redis-sentinel", f"{HOST}:{fake.port}",
                                  "--redis-master", MASTER,
                                  "--redis-sentinel-password", "wrong"])
        wait_until(lambda: node.alive() and node.get("/healthz", timeout=1)[0] == 200, t(10),
                   what="node up")
        wait_until(lambda: len(fake.auths) >= 2, t(10), what="AUTH attempts")
        assert fake.lookups == 0 and node.get("/readyz")[0] == 503
        assert "redis sentinel refused AUTH" in node.log_text()
    finally:
        fake.close()


def test_sentinel_failover_with_one_sentinel_down(harness):
    """The first sentinel of the nodes' list killed before the primary: they find the
    primary and the switch through the other two."""
    nats = harness.nats()
    r = failover_run(harness, nats, sentinel_down=True)
    print(f"one sentinel down: presence answered {r['answer_s']:.2f}s after +switch-master "
          f"(sentinels agreed {r['agree_s']:.2f}s after kill -9)")
    assert r["answer_s"] <= 5.0, r

"""Limits of the edge (docs/security.md), each hit and answered as specified while other
clients of the same node are unaffected: message rate (error rate_limited, then close
1008), rooms per connection (forbidden), connections per user (429 before the upgrade),
request line and header size (431), the handshake deadline (slowloris), message size
(1009), the outbound queue (slow consumer) and the process's open-files limit; and the JWT
`rooms` claim.

Standalone nodes (in-memory bus and presence): the limits are per connection or per node.
"""

import asyncio
import json
import os
import resource
import socket
import time

import natter_harness as nh
from natter_harness import Client, close_all, run, t


metrics = nh.node_metrics


def upgrade_status(node, token, headers=None):
    """HTTP status of a raw upgrade request with `token` (101 when accepted)."""
    path = "/ws?token=" + token
    st, hdrs, body = nh.raw_http(node.port, nh.upgrade_request(path, f"{nh.HOST}:{node.port}",
                                                               headers))
    return st, body


async def chat_works(a, b, room):
    """a and b are in `room`: a message from a reaches b."""
    ack = await a.say(room, {"probe": time.monotonic()})
    await b.expect("message", id=ack["id"])


# ---------------------------------------------------------------------------------------
# Message rate
# ---------------------------------------------------------------------------------------

def test_rate_limit_answers_rate_limited_then_closes_1008(harness):
    node = harness.node("solo", args=["--rate-limit", "5", "--rate-burst", "5",
                                      "--rate-close-after", "5"])

    async def body():
        flood = await Client.connect(node, "flooder")
        alice = await Client.connect(node, "alice")
        bob = await Client.connect(node, "bob")
        try:
            await alice.join("calm")
            await bob.join("calm")
            # 30 requests at once: the burst passes, then rate_limited errors (with the
            # requestId echoed), then the fifth refusal within 10 s closes with 1008.
            rids = [f"f{i}" for i in range(30)]
            await asyncio.gather(*(flood.send({"action": "heartbeat", "requestId": r})
                                   for r in rids), return_exceptions=True)
            code, reason = await flood.wait_closed()
            assert code == 1008, f"close {code} {reason!r}, want 1008"
            ok = flood.received("heartbeat")
            limited = flood.received("error", code="rate_limited")
            assert 5 <= len(ok) <= 10, f"the burst of 5 should pass: {len(ok)} replies"
            assert len(limited) == 4, \
                f"4 rate_limited errors, then the 5th refusal closes: {limited}"
            assert all(f.get("requestId") in rids for f in limited), \
                f"rate_limited errors must echo the requestId: {limited}"
            # Nothing after the close was processed.
            assert len(ok) + len(limited) < len(rids)
            # Everybody else on the node is unaffected.
            await chat_works(alice, bob, "calm")
            await chat_works(bob, alice, "calm")
            m = metrics(node)
            assert m.get("natter_rate_limited_total", 0) >= 5, m
            assert m.get("natter_rate_limit_closes_total") == 1, m
        finally:
            await close_all(flood, alice, bob)
    run(body())


def test_rate_limit_refills_and_never_closes_when_disabled(harness):
    node = harness.node("solo", args=["--rate-limit", "10", "--rate-burst", "3",
                                      "--rate-close-after", "0"])

    async def body():
        c = await Client.connect(node, "alice")
        try:
            for r in range(20):
                await c.send({"action": "heartbeat", "requestId": f"a{r}"})
            await c.expect_error("rate_limited")
            await c.expect_none("nothing", within=t(0.5))  # let the rest arrive
            assert not c.closed, "--rate-close-after 0 must never close"
            assert len(c.received("heartbeat")) >= 3
            await asyncio.sleep(0.5)  # 5 tokens come back
            for r in range(3):
                rid = await c.action("heartbeat")
                await c.expect_reply(rid, "heartbeat")
        finally:
            await c.close()
    run(body())


def test_rate_limit_counts_binary_frames_and_bad_json_too(harness):
    node = harness.node("solo", args=["--rate-limit", "2", "--rate-burst", "2",
                                      "--rate-close-after", "3"])

    async def body():
        c = await Client.connect(node, "alice")
        try:
            for _ in range(10):
                await c.ws.send(b"\x00binary")
                await c.send("not json")
            code, _ = await c.wait_closed()
            assert code == 1008, code
        finally:
            await c.close()
    run(body())


# ---------------------------------------------------------------------------------------
# Rooms per connection
# ---------------------------------------------------------------------------------------

def test_rooms_per_connection(harness):
    node = harness.node("solo", args=["--max-rooms-per-connection", "3"])

    async def body():
        a = await Client.connect(node, "alice")
        b = await Client.connect(node, "bob")
        try:
            for r in ("r1", "r2", "r3"):
                await a.join(r)
            rid = await a.action("joinRoom", roomId="r4")
            e = await a.expect_error("forbidden", rid=rid)
            assert "room" in e.get("message", ""), e
            # Joining a room it is already in is not a new room.
            await a.join("r2")
            # The refused join left no trace: bob in r4 sees nobody else.
            j = await b.join("r4")
            assert [m["userId"] for m in j["members"]] == ["bob"], j
            # Leaving frees a place.
            await a.leave("r1")
            await a.join("r4")
            await chat_works(b, a, "r4")
            # The limit is per connection: alice's second tab has its own three.
            a2 = await Client.connect(node, "alice", name="alice-tab2")
            try:
                for r in ("x1", "x2", "x3"):
                    await a2.join(r)
            finally:
                await a2.close()
            assert metrics(node).get("natter_room_limit_rejected_total") == 1
        finally:
            await close_all(a, b)
    run(body())


# ---------------------------------------------------------------------------------------
# Connections per user
# ---------------------------------------------------------------------------------------

def test_connections_per_user_429_before_upgrade(harness):
    node = harness.node("solo", args=["--max-connections-per-user", "2"])

    async def body():
        a1 = await Client.connect(node, "alice")
        a2 = await Client.connect(node, "alice", name="alice-2")
        bob = await Client.connect(node, "bob")
        try:
            st, body_ = await asyncio.to_thread(upgrade_status, node, node.token("alice"))
            assert st == 429, f"third connection of alice: {st} {body_!r}"
            # Same user id in another tenant is another user.
            other = await Client.connect(node, "alice", tenant="t2", name="alice@t2")
            await other.close()
            # The others keep working.
            await a1.join("r")
            await bob.join("r")
            await chat_works(a1, bob, "r")
            await a2.assert_open()
            # A closed connection frees its place.
            await a2.close()

            def accepted():
                return upgrade_status(node, node.token("alice"))[0] == 101
            await nh.async_wait_until(accepted, t(5), what="alice accepted again")
            assert metrics(node).get("natter_user_limit_rejected_total", 0) >= 1
        finally:
            await close_all(a1, a2, bob)
    run(body())


def test_connections_per_user_unlimited_by_default(harness):
    node = harness.node("solo")

    async def body():
        cs = [await Client.connect(node, "alice", name=f"alice-{i}") for i in range(6)]
        try:
            for c in cs:
                await c.assert_open()
        finally:
            await close_all(*cs)
    run(body())


# ---------------------------------------------------------------------------------------
# HTTP request size and deadline
# ---------------------------------------------------------------------------------------

def test_header_and_request_line_limits_431(harness):
    node = harness.node("solo", args=["--max-header-bytes", "2048"])
    tok = node.token("alice")

    async def body():
        c = await Client.connect(node, "bob")
        try:
            st, _ = await asyncio.to_thread(upgrade_status, node, tok, {"X-Big": "y" * 3000})
            assert st == 431, f"3000-byte header: {st}"
            st, _ = await asyncio.to_thread(upgrade_status, node, tok + "&pad=" + "z" * 3000)
            assert st == 431, f"3000-byte request line: {st}"
            st, _ = await asyncio.to_thread(upgrade_status, node, tok, {"X-Small": "y" * 500})
            assert st == 101, f"a request under the limit: {st}"
            await c.assert_open()
        finally:
            await c.close()
    run(body())
    # The default (16 KiB) takes an 8 KiB header, e.g. a token with a long rooms claim.
    node2 = harness.node("solo-default")
    st, _ = upgrade_status(node2, node2.token("alice"), {"X-Big": "y" * 8000})
    assert st == 101, st
    st, _ = upgrade_status(node2, node2.token("alice"), {"X-Big": "y" * 17000})
    assert st == 431, st


def _closed_by_peer(sock, timeout):
    """Seconds until the peer closed `sock` (EOF or reset), or None after `timeout`."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < timeout:
        try:
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


def test_handshake_timeout_closes_idle_and_slow_requests(harness):
    node = harness.node("solo", args=["--handshake-timeout", "1.5"])

    async def body():
        c = await Client.connect(node, "alice")
        try:
            # Connected, nothing sent.
            idle = socket.create_connection((nh.HOST, node.port))
            # Half a request, then silence.
            half = socket.create_connection((nh.HOST, node.port))
            half.sendall(b"GET /ws?token=" + node.token("bob").encode() + b" HTTP/1.1\r\nHost: x\r\n")
            # Slowloris: a byte every 0.2 s keeps the socket busy but never completes.
            trickle = socket.create_connection((nh.HOST, node.port))

            def drip():
                req = nh.upgrade_request("/ws?token=" + node.token("carol"), "x")
                t0 = time.monotonic()
                for i in range(len(req) - 2):
                    try:
                        trickle.sendall(req[i:i + 1])
                    except OSError:
                        return time.monotonic() - t0
                    time.sleep(0.2)
                    if time.monotonic() - t0 > t(8):
                        break
                return None
            slow_t, idle_t, half_t = await asyncio.gather(
                asyncio.to_thread(drip), asyncio.to_thread(_closed_by_peer, idle, t(6)),
                asyncio.to_thread(_closed_by_peer, half, t(6)))
            for name, v in (("idle", idle_t), ("half request", half_t)):
                assert v is not None, f"{name} connection still open after {t(6)}s"
                assert 1.0 <= v <= 2.5 + t(1.5), f"{name} closed after {v:.2f}s"
            assert slow_t is not None and slow_t <= 2.5 + t(2), \
                f"trickling request not cut at the deadline ({slow_t})"
            for s in (idle, half, trickle):
                s.close()
            # The upgraded client is past the HTTP phase: not affected.
            await c.assert_open()
            assert metrics(node).get("natter_handshake_timeouts_total", 0) >= 3
        finally:
            await c.close()
    run(body())


# ---------------------------------------------------------------------------------------
# Message size and outbound queue
# ---------------------------------------------------------------------------------------

def test_message_too_large_1009_others_unaffected(harness):
    node = harness.node("solo", args=["--max-message-bytes", "2048"])

    async def body():
        big = await Client.connect(node, "big")
        a = await Client.connect(node, "alice")
        b = await Client.connect(node, "bob")
        try:
            for c in (a, b, big):
                await c.join("r")
            await big.send(json.dumps({"action": "sendMessage", "roomId": "r",
                                       "message": "x" * 3000}))
            code, _ = await big.wait_closed()
            assert code == 1009, code
            await chat_works(a, b, "r")
        finally:
            await close_all(big, a, b)
    run(body())


def test_send_queue_cap_closes_slow_consumer_only(harness):
    node = harness.node("solo", args=["--send-queue-bytes", "131072", "--rate-limit", "0"])

    async def body():
        sender = await Client.connect(node, "sender")
        fast = await Client.connect(node, "fast")
        slow = await asyncio.to_thread(nh.RawWS, node.port, "/ws?token=" + node.token("slow"))
        try:
            await asyncio.to_thread(slow.recv_json)  # welcome
            slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await asyncio.to_thread(slow.send_text,
                                    json.dumps({"action": "joinRoom", "roomId": "r"}))
            await fast.join("r")
            await sender.join("r")
            await asyncio.sleep(0.3)
            acks = []
            for i in range(400):  # up to 24 MB towards a reader that never reads
                acks.append(await sender.say("r", {"i": i, "pad": "p" * 60000}))
                if metrics(node).get("natter_slow_consumer_closes_total", 0) >= 1:
                    break
            await nh.async_wait_until(
                lambda: metrics(node).get("natter_slow_consumer_closes_total", 0) >= 1, t(10),
                what="the slow consumer closed")
            for ack in acks:
                await fast.expect("message", id=ack["id"])
            await fast.assert_open()
        finally:
            slow.close()
            await close_all(sender, fast)
    run(body())


# ---------------------------------------------------------------------------------------
# The JWT `rooms` claim
# ---------------------------------------------------------------------------------------

def test_rooms_claim_allows_exact_names_and_prefixes(harness):
    node = harness.node("solo")

    async def body():
        tok = node.token("alice", rooms=["lobby", "team-*"])
        a = await Client.connect(node, "alice", token=tok)
        b = await Client.connect(node, "bob")  # no claim: any room of the tenant
        try:
            for room in ("lobby", "team-a", "team-", "team-red-42"):
                await a.join(room)
            for room in ("lobby2", "team", "teams", "other", "Lobby"):
                rid = await a.action("joinRoom", roomId=room)
                await a.expect_error("forbidden", rid=rid)
            # presence of a room outside the claim is forbidden as well
            rid = await a.action("presence", roomId="other")
            await a.expect_error("forbidden", rid=rid)
            # sending needs membership, which the claim refused
            rid = await a.action("sendMessage", roomId="other", message="x")
            await a.expect_error("forbidden", rid=rid)
            # allowed rooms work normally with clients without a claim
            await b.join("other")
            j = await b.join("team-a")
            assert {m["userId"] for m in j["members"]} == {"alice", "bob"}, j
            await chat_works(a, b, "team-a")
            await chat_works(b, a, "team-a")
            # the refused joins left no presence behind
            m = await b.action("presence", roomId="other")
            f = await b.expect_reply(m, "members")
            assert [x["userId"] for x in f["members"]] == ["bob"], f
        finally:
            await close_all(a, b)
    run(body())


def test_rooms_claim_empty_list_and_wildcard(harness):
    node = harness.node("solo")

    async def body():
        none = await Client.connect(node, "nobody", token=node.token("nobody", rooms=[]))
        star = await Client.connect(node, "anyone", token=node.token("anyone", rooms=["*"]))
        try:
            rid = await none.action("joinRoom", roomId="lobby")
            await none.expect_error("forbidden", rid=rid)
            await none.assert_open()  # refused, not disconnected
            for room in ("lobby", "x", "team-1"):
                await star.join(room)
        finally:
            await close_all(none, star)
    run(body())


def test_rooms_claim_malformed_is_refused_at_upgrade(harness):
    node = harness.node("solo")
    for bad in ("lobby", [1, 2], ["ok", None], ["a.b"], [""]):
        st, body = upgrade_status(node, node.token("mallory", rooms=bad))
        assert st == 401, f"rooms={bad!r}: {st} {body!r}"
    st, _ = upgrade_status(node, node.token("alice", rooms=["ok", "team-*"]))
    assert st == 101


# ---------------------------------------------------------------------------------------
# Out of file descriptors
# ---------------------------------------------------------------------------------------

def _cpu_s(pid):
    """User + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_pauses_accepting_and_recovers(harness):
    """At the open-files limit accept4 fails with EMFILE while clients wait in the backlog.
    The node must not spin on the ever-readable listener, must keep serving the
    connections it has, and must accept again once descriptors are free. (--max-connections
    is set high so the limit of descriptors is what is hit, not the node's own 503.)"""
    node = harness.node("A", args=["--max-connections", "100000"])

    async def body():
        a = await Client.connect(node, "alice")
        b = await Client.connect(node, "bob")
        waiting = []
        try:
            await a.join("r")
            await b.join("r")
            nfd = len(os.listdir(f"/proc/{node.pid}/fd"))
            soft, hard = resource.prlimit(node.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(node.pid, resource.RLIMIT_NOFILE, (nfd + 4, hard))
            for _ in range(20):  # 4 are accepted, the rest meet EMFILE
                waiting.append(socket.create_connection((nh.HOST, node.port), timeout=5))
            await asyncio.sleep(0.5)
            cpu0 = _cpu_s(node.pid)
            await asyncio.sleep(t(2.0))
            burnt = _cpu_s(node.pid) - cpu0
            assert burnt < 0.5 * t(2.0), f"node spins at its descriptor limit: {burnt:.2f} s CPU"
            await chat_works(a, b, "r")  # the connections it has are served
            for s in waiting:
                s.close()
            waiting = []
            resource.prlimit(node.pid, resource.RLIMIT_NOFILE, (soft, hard))
            c = await Client.connect(node, "carol")  # accepting resumed
            await c.join("r")
            await chat_works(c, a, "r")
            await c.close()
            m = metrics(node)
            assert m.get("natter_accept_paused_total", 0) >= 1, m
            assert "accept failed" in node.log_text()
        finally:
            for s in waiting:
                s.close()
            await close_all(a, b)
    run(body())

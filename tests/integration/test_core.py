"""Core behaviour of natter-node against a real nats-server and redis-server: two clustered
nodes (A and B), rooms across nodes, direct messages, interest-based subscriptions, tenant
isolation, authentication before the upgrade, hostile input, NATS restart, standalone mode.
"""

import asyncio
import json
import time

import pytest

import natter_harness as nh
from natter_harness import Client, RawWS, close_all, run, t

ROOM_SUBJECT = "natter.room.{}.{}"
USER_SUBJECT = "natter.user.{}.{}"


def now_ms():
    return int(time.time() * 1000)


def assert_timestamp(f):
    ts = f.get("timestamp")
    assert isinstance(ts, int), f"timestamp must be integer milliseconds: {f}"
    assert abs(ts - now_ms()) < 120_000, f"timestamp {ts} is not near now ({now_ms()}): {f}"


def member_ids(frame):
    ms = frame.get("members")
    assert isinstance(ms, list), f"members must be a list: {frame}"
    for m in ms:
        assert isinstance(m, dict) and isinstance(m.get("userId"), str), \
            f"a member is {{\"userId\": ...}}: {frame}"
    return [m["userId"] for m in ms]


# ---------------------------------------------------------------------------------------
# Rooms across nodes
# ---------------------------------------------------------------------------------------

def test_room_message_reaches_both_nodes_with_ack(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        try:
            for c, user in ((alice, "alice"), (bob, "bob")):
                w = c.welcome
                assert w["userId"] == user and w["tenantId"] == "t1", w
                assert isinstance(w.get("connectionId"), str) and w["connectionId"], w
                assert isinstance(w.get("heartbeatInterval"), int) and \
                    w["heartbeatInterval"] > 0, f"heartbeatInterval (ms) missing: {w}"
            assert alice.welcome["connectionId"] != bob.welcome["connectionId"]

            j = await alice.join("lobby")
            assert j["roomId"] == "lobby" and "alice" in member_ids(j), j
            j = await bob.join("lobby")
            assert j["roomId"] == "lobby", j
            assert set(member_ids(j)) >= {"alice", "bob"}, \
                f"joined on B must list members on both nodes: {j}"
            await nats.await_sub_count(ROOM_SUBJECT.format("t1", "lobby"), 2)

            payload = {"text": "héllo ✓ 🚀", "n": [1, 2.5, {"x": None, "y": True}]}
            rid = await alice.action("sendMessage", roomId="lobby", message=payload)
            ack = await alice.expect_reply(rid, "ack")
            assert ack["requestId"] == rid
            assert isinstance(ack.get("id"), str) and ack["id"], f"ack without id: {ack}"

            for c in (bob, alice):
                m = await c.expect("message", id=ack["id"])
                assert m["roomId"] == "lobby" and m["userId"] == "alice", m
                assert m["message"] == payload, m
                assert_timestamp(m)

            # Other direction, and ids are unique per message.
            ack2 = await bob.say("lobby", "plain string payload")
            assert ack2["id"] != ack["id"]
            m = await alice.expect("message", id=ack2["id"])
            assert m["userId"] == "bob" and m["message"] == "plain string payload", m
            await bob.expect("message", id=ack2["id"])
        finally:
            await close_all(alice, bob)
    run(body())


def test_exclude_self_skips_only_the_sender(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        alice2 = await Client.connect(A, "alice", name="alice-tab2")
        bob = await Client.connect(B, "bob")
        try:
            for c in (alice, alice2, bob):
                await c.join("r1")
            await nats.await_sub_count(ROOM_SUBJECT.format("t1", "r1"), 2)

            ack1 = await alice.say("r1", {"n": 1}, exclude_self=True)
            await bob.expect("message", id=ack1["id"])
            await alice2.expect("message", id=ack1["id"])
            # Ordering sentinel: a later message without excludeSelf reaches the sender, so
            # the first one would have arrived before it.
            ack2 = await alice.say("r1", {"n": 2}, exclude_self=False)
            await alice.expect("message", id=ack2["id"])
            assert not alice.received("message", id=ack1["id"]), \
                "excludeSelf message came back to its sender"
        finally:
            await close_all(alice, alice2, bob)
    run(body())


def test_request_id_echo_string_and_number(cluster):
    _nats, _redis, A, _B = cluster

    async def body():
        c = await Client.connect(A, "alice")
        try:
            await c.send({"action": "heartbeat", "requestId": 42})
            f = await c.expect("heartbeat")
            assert f.get("requestId") == 42, f"numeric requestId must be echoed as is: {f}"
            await c.send({"action": "joinRoom", "roomId": "x", "requestId": "join-1"})
            f = await c.expect("joined")
            assert f.get("requestId") == "join-1", f
            await c.send({"action": "heartbeat"})
            f = await c.expect("heartbeat")
            assert f.get("requestId") is None, f"no requestId was given: {f}"
            await c.send({"action": "leaveRoom", "roomId": "x", "requestId": "bye"})
            f = await c.expect("left")
            assert f["roomId"] == "x" and f["requestId"] == "bye", f
        finally:
            await c.close()
    run(body())


def test_send_to_user_reaches_every_connection_on_both_nodes(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob_a = await Client.connect(A, "bob", name="bob@A")
        bob_b = await Client.connect(B, "bob", name="bob@B")
        carol = await Client.connect(B, "carol")
        try:
            await nats.await_sub_count(USER_SUBJECT.format("t1", "bob"), 2)
            payload = {"secret": "for bob", "list": [1, 2, 3]}
            rid = await alice.action("sendToUser", userId="bob", message=payload)
            got = []
            for c in (bob_a, bob_b):
                d = await c.expect("direct")
                assert d["userId"] == "alice", f"direct must name the sender: {d}"
                assert d["message"] == payload, d
                assert isinstance(d.get("id"), str) and d["id"], d
                assert_timestamp(d)
                got.append(d["id"])
            assert got[0] == got[1], f"one message, one id on every connection: {got}"
            # The sender's reply (if any) must not be an error.
            assert not alice.received("error"), alice.frames
            assert not alice.received("direct") and not carol.received("direct")

            # B → A, single connection.
            await nats.await_sub_count(USER_SUBJECT.format("t1", "alice"), 1)
            await carol.action("sendToUser", userId="alice", message="hi alice")
            d = await alice.expect("direct")
            assert d["userId"] == "carol" and d["message"] == "hi alice", d
            assert rid  # requestId was accepted
        finally:
            await close_all(alice, bob_a, bob_b, carol)
    run(body())


def _user_subs(nats, subject, exact):
    """Subscriptions whose own subject is exactly `exact` among those matching `subject`."""
    return [s for s in nats.subs(subject) if s.get("subject") == exact]


def test_user_wildcard_past_max_user_subscriptions(harness):
    """--max-user-subscriptions 2: node A subscribes per user for its first two users of
    tenant t1, then once to natter.user.t1.* for the rest. Direct messages reach every
    user exactly once — including a user with its own subscription that receives a
    stream while the wildcard is being taken — another tenant is not affected, and the
    wildcard goes away with the tenant's last local user."""
    nats, _redis, (A, B) = harness.cluster(
        2, args=["--max-user-subscriptions", "2", "--rate-limit", "0"])
    wild = "natter.user.t1.*"

    async def body():
        u0 = await Client.connect(A, "u0")
        u1 = await Client.connect(A, "u1")
        other = await Client.connect(A, "u0", tenant="t2")
        sender = await Client.connect(B, "sender")
        extra = []
        try:
            await nats.await_sub_count(USER_SUBJECT.format("t1", "u0"), 1)
            await nats.await_sub_count(USER_SUBJECT.format("t1", "u1"), 1)
            assert not _user_subs(nats, USER_SUBJECT.format("t1", "u0"), wild)
            # A stream to u0 (own subscription) while u2 and u3 arrive: the third user
            # makes A take the wildcard; u0 must get every message once, in order.
            n = 150

            async def send_stream():
                for i in range(n):
                    await sender.action("sendToUser", userId="u0", message={"i": i})
                    await asyncio.sleep(0.004)
            stream = asyncio.ensure_future(send_stream())
            await u0.expect("direct", pred=lambda f: f["message"] == {"i": 10})
            extra = [await Client.connect(A, "u2"), await Client.connect(A, "u3")]
            assert not stream.done(), "the stream must still run while the wildcard is taken"
            await stream
            await nats.await_sub_count(USER_SUBJECT.format("t1", "u3"), 1)
            assert len(_user_subs(nats, USER_SUBJECT.format("t1", "u3"), wild)) == 1
            # u2, u3: no subscription of their own; u0, u1 keep theirs.
            assert not _user_subs(nats, USER_SUBJECT.format("t1", "u2"),
                                  USER_SUBJECT.format("t1", "u2"))
            assert _user_subs(nats, USER_SUBJECT.format("t1", "u0"),
                              USER_SUBJECT.format("t1", "u0"))
            for uid, c in (("u0", u0), ("u1", u1), ("u2", extra[0]), ("u3", extra[1])):
                await sender.action("sendToUser", userId=uid, message={"to": uid})
                d = await c.expect("direct", pred=lambda f, uid=uid: f["message"] == {"to": uid})
                assert d["userId"] == "sender", d
            await other.expect_none("direct", within=0.3)  # t2's u0 is someone else
            await asyncio.sleep(0.5)  # time for any duplicate to show up
            got = [f["message"]["i"] for f in u0.received("direct") if "i" in f["message"]]
            assert got == list(range(n)), f"u0 lost or doubled messages: {got}"
            for uid, c in (("u0", u0), ("u1", u1), ("u2", extra[0]), ("u3", extra[1])):
                assert len(c.received("direct", pred=lambda f, uid=uid:
                                      f["message"] == {"to": uid})) == 1, (uid, c.frames)
            _st, m = A.get("/metrics", api=True)
            m = m.decode() if isinstance(m, bytes) else m
            assert "natter_user_wildcard_tenants 1" in m, m
            # the tenant's last local user leaving drops the wildcard
            await close_all(u0, u1, *extra)
            await nats.await_sub_count(USER_SUBJECT.format("t1", "u3"), 0)
        finally:
            await close_all(u0, u1, other, sender, *extra)
    run(body())


@pytest.mark.parametrize("history", ["auto", "off"])
def test_subscription_follows_local_interest(harness, history):
    nats, _redis, (A, B) = harness.cluster(2, args=["--history", history])
    subj = ROOM_SUBJECT.format("t1", "interest")

    async def body():
        assert nats.sub_count(subj) == 0, f"subscriptions before any join: {nats.subs(subj)}"
        a1 = await Client.connect(A, "alice")
        a2 = await Client.connect(A, "anna")
        b1 = await Client.connect(B, "bob")
        try:
            await a1.join("interest")
            await nats.await_sub_count(subj, 1)
            # A second local member does not add a second subscription; B has none.
            await a2.join("interest")
            await a2.assert_open()
            await asyncio.sleep(0.3)
            assert nats.sub_count(subj) == 1, \
                f"node B (no member) or a second local member subscribed: {nats.subs(subj)}"

            await b1.join("interest")
            await nats.await_sub_count(subj, 2)
            await b1.leave("interest")
            await nats.await_sub_count(subj, 1)

            await a1.leave("interest")
            await a2.assert_open()
            await asyncio.sleep(0.3)
            assert nats.sub_count(subj) == 1, "A unsubscribed while anna is still a member"
            # The last local member disconnecting (not leaving) also drops the interest.
            await a2.close()
            await nats.await_sub_count(subj, 0)
        finally:
            await close_all(a1, a2, b1)
    run(body())


def test_tenants_are_isolated(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice", tenant="t1")
        mallory = await Client.connect(B, "mallory", tenant="t2")
        eve = await Client.connect(A, "eve", tenant="t2")
        bob_t2 = await Client.connect(B, "bob", tenant="t2")
        bob_t1 = await Client.connect(A, "bob", tenant="t1")
        try:
            assert mallory.welcome["tenantId"] == "t2"
            await alice.join("lobby")
            j = await mallory.join("lobby")
            assert "alice" not in member_ids(j), f"t1 member listed in t2's room: {j}"
            j = await eve.join("lobby")
            assert "alice" not in member_ids(j), j
            await nats.await_sub_count(ROOM_SUBJECT.format("t1", "lobby"), 1)
            await nats.await_sub_count(ROOM_SUBJECT.format("t2", "lobby"), 2)

            ack_t1 = await alice.say("lobby", "t1 only")
            await alice.expect("message", id=ack_t1["id"])
            await alice.action("sendToUser", userId="bob", message="t1 bob only")
            await bob_t1.expect("direct", message="t1 bob only")
            # Sentinels in t2: once they arrive, t1's messages would have too.
            ack_t2 = await mallory.say("lobby", "t2 only")
            await eve.expect("message", id=ack_t2["id"])
            await mallory.expect("message", id=ack_t2["id"])
            await mallory.action("sendToUser", userId="bob", message="t2 bob only")
            await bob_t2.expect("direct", message="t2 bob only")
            await asyncio.sleep(0.3)
            for c in (mallory, eve):
                assert not c.received("message", id=ack_t1["id"]), "t1 message leaked into t2"
            assert not alice.received("message", id=ack_t2["id"]), "t2 message leaked into t1"
            assert not bob_t2.received("direct", message="t1 bob only"), "direct leaked t1→t2"
            assert not bob_t1.received("direct", message="t2 bob only"), "direct leaked t2→t1"
        finally:
            await close_all(alice, mallory, eve, bob_t2, bob_t1)
    run(body())


def test_members_and_presence_across_nodes(cluster):
    nats, _redis, A, B = cluster

    async def body():
        alice = await Client.connect(A, "alice")
        bob1 = await Client.connect(B, "bob", name="bob-tab1")
        bob2 = await Client.connect(A, "bob", name="bob-tab2")
        try:
            await alice.join("p")
            # joined may be sent before nats-server has the node's SUB: wait for interest.
            await nats.await_sub_count("natter.presence.t1.p", 1)
            await bob1.join("p")
            f = await alice.expect("presence", userId="bob", timeout=t(10))
            assert f["roomId"] == "p" and f["status"] == "online", f
            assert_timestamp(f)
            await bob2.join("p")

            rid = await alice.action("presence", roomId="p")
            m = await alice.expect_reply(rid, "members")
            ids = member_ids(m)
            assert m["roomId"] == "p" and sorted(ids) == ["alice", "bob"], \
                f"members must be deduplicated by user: {m}"

            # bob leaving one of two connections is not an offline transition.
            await bob1.leave("p")
            await bob2.leave("p")
            f = await alice.expect("presence", userId="bob", status="offline", timeout=t(10))
            offline = alice.received("presence", userId="bob", status="offline")
            assert len(offline) == 1, f"exactly one offline event for bob: {offline}"
            rid = await alice.action("presence", roomId="p")
            m = await alice.expect_reply(rid, "members")
            assert member_ids(m) == ["alice"], m
        finally:
            await close_all(alice, bob1, bob2)
    run(body())


def test_send_without_joining_is_forbidden_and_leave_unknown_is_not_found(cluster):
    _nats, _redis, A, _B = cluster

    async def body():
        c = await Client.connect(A, "alice")
        try:
            rid = await c.action("sendMessage", roomId="elsewhere", message="x")
            await c.expect_error("forbidden", rid)
            rid = await c.action("leaveRoom", roomId="elsewhere")
            await c.expect_error("not_found", rid)
            await c.assert_open()
        finally:
            await c.close()
    run(body())


def test_heartbeat_reply(cluster):
    _nats, _redis, A, _B = cluster

    async def body():
        c = await Client.connect(A, "alice")
        try:
            for _ in range(3):
                rid = await c.action("heartbeat")
                f = await c.expect_reply(rid, "heartbeat")
                assert f["requestId"] == rid
        finally:
            await c.close()
    run(body())


# ---------------------------------------------------------------------------------------
# HTTP before the upgrade
# ---------------------------------------------------------------------------------------

def _upgrade_status(node, path="/ws", headers=None):
    status, hdrs, body = nh.raw_http(node.port, nh.upgrade_request(path, f"127.0.0.1:{node.port}",
                                                                    headers))
    return status


def test_401_before_upgrade(harness):
    node = harness.node("solo")
    good = node.token("alice")
    cases = {
        "no token": "/ws",
        "empty token": "/ws?token=",
        "garbage": "/ws?token=not.a.jwt",
        "bad signature": "/ws?token=" + nh.make_token("alice", secret="wrong-secret-0123456789abcdef"),
        "expired": "/ws?token=" + node.token("alice", exp_in=-300),
        "no exp": "/ws?token=" + node.token("alice", exp_in=None),
        "alg none": "/ws?token=" + nh.make_unsigned_token("alice"),
        "other alg (HS512)": "/ws?token=" + node.token("alice", alg="HS512"),
        "no tenant": "/ws?token=" + node.token("alice", tenant=None),
    }
    wrong = {k: _upgrade_status(node, v) for k, v in cases.items()}
    bad = {k: s for k, s in wrong.items() if s != 401}
    assert not bad, f"expected 401 before the upgrade, got: {bad}"
    assert _upgrade_status(node, "/ws", {"Authorization": "Bearer " + nh.make_unsigned_token("a")}) == 401
    # The same checks accept a good token, in the query or as a bearer header.
    assert _upgrade_status(node, "/ws?token=" + good) == 101
    assert _upgrade_status(node, "/ws", {"Authorization": "Bearer " + good}) == 101


def test_403_wrong_origin(harness):
    node = harness.node("solo", args=["--allowed-origins",
                                      "http://good.example,https://chat.example"])
    tok = node.token("alice")
    assert _upgrade_status(node, "/ws?token=" + tok, {"Origin": "http://evil.example"}) == 403
    assert _upgrade_status(node, "/ws?token=" + tok,
                           {"Origin": "http://good.example.evil.example"}) == 403
    assert _upgrade_status(node, "/ws?token=" + tok, {"Origin": "http://good.example"}) == 101
    assert _upgrade_status(node, "/ws?token=" + tok, {"Origin": "https://chat.example"}) == 101


def test_non_ws_paths_get_plain_http(cluster):
    _nats, _redis, A, _B = cluster
    status, _body = A.get("/no-such-page-here")
    assert status == 404
    tok = A.token("alice")
    assert _upgrade_status(A, "/not-ws?token=" + tok) == 404
    for api in (False, True):
        assert A.get("/healthz", api=api)[0] == 200
        assert A.get("/readyz", api=api)[0] == 200


# ---------------------------------------------------------------------------------------
# Hostile frames
# ---------------------------------------------------------------------------------------

def test_oversize_message_closes_1009(harness):
    node = harness.node("solo", args=["--max-message-bytes", "1024"])

    async def body():
        ok = await Client.connect(node, "alice")
        big = await Client.connect(node, "bob")
        try:
            await ok.join("r")
            await big.join("r")
            # Just under the limit is fine.
            base = json.dumps({"action": "sendMessage", "roomId": "r", "message": "",
                               "requestId": "r0000000"})
            pad = "x" * (1000 - len(base))
            ack = await big.say("r", pad)
            await ok.expect("message", id=ack["id"])
            # Over the limit: close 1009.
            await big.send(json.dumps({"action": "sendMessage", "roomId": "r",
                                       "message": "y" * 2000}))
            code, _ = await big.wait_closed()
            assert code == 1009, f"close code {code}, want 1009"
            assert not ok.received("message", pred=lambda f: f.get("message") == "y" * 2000)
            await ok.assert_open()
        finally:
            await close_all(ok, big)
    run(body())


def test_oversize_fragmented_and_compressed_close_1009(harness):
    node = harness.node("solo", args=["--max-message-bytes", "1024"])
    tok = node.token("alice")
    raw = RawWS(node.port, "/ws?token=" + tok)
    try:
        raw.recv_json()  # welcome
        # 3 fragments of 500 bytes: each is under the limit, the message is not.
        raw.send_frame(nh.OP_TEXT, b"[" + b" " * 499, fin=False)
        raw.send_frame(nh.OP_CONT, b" " * 500, fin=False)
        raw.send_frame(nh.OP_CONT, b" " * 499 + b"]", fin=True)
        code, _, _ = raw.wait_close()
        assert code == 1009, f"fragmented oversize message: close code {code}, want 1009"
    finally:
        raw.close()

    async def compressed():
        # permessage-deflate (when the node negotiates it): the limit applies to the
        # inflated size, so a tiny compressed frame of a huge message is still refused.
        c = await Client.connect(node, "bob", compression="deflate")
        try:
            await c.send(json.dumps({"action": "heartbeat", "pad": "z" * 100000}))
            code, _ = await c.wait_closed()
            assert code == 1009, f"compressed oversize message: close code {code}, want 1009"
        finally:
            await c.close()
    run(compressed())


def test_invalid_utf8_text_closes_1007(harness):
    node = harness.node("solo")
    raw = RawWS(node.port, "/ws?token=" + node.token("alice"))
    try:
        w = raw.recv_json()
        assert w["type"] == "welcome", w
        raw.send_frame(nh.OP_TEXT, b'{"action":"heartbeat","x":"\xff\xfe"}')
        code, _, _ = raw.wait_close()
        assert code == 1007, f"close code {code}, want 1007"
    finally:
        raw.close()
    # A node that closed one bad client still serves others.
    run(_chat_two_clients(node))


def test_utf8_split_across_fragments_is_valid(harness):
    node = harness.node("solo")
    raw = RawWS(node.port, "/ws?token=" + node.token("alice"))
    try:
        raw.recv_json()  # welcome
        msg = '{"action":"heartbeat","requestId":"é€😀"}'.encode()
        cut = msg.index("€".encode()) + 1  # inside the 3-byte sequence
        raw.send_frame(nh.OP_TEXT, msg[:cut], fin=False)
        raw.send_frame(nh.OP_CONT, msg[cut:], fin=True)
        f = raw.recv_json()
        assert f["type"] == "heartbeat" and f.get("requestId") == "é€😀", f
    finally:
        raw.close()


def test_unmasked_client_frame_is_a_protocol_error(harness):
    node = harness.node("solo")
    raw = RawWS(node.port, "/ws?token=" + node.token("alice"))
    try:
        raw.recv_json()
        raw.send_frame(nh.OP_TEXT, b'{"action":"heartbeat"}', mask=False)
        code, _, frames = raw.wait_close()
        assert code == 1002, f"close code {code} after an unmasked frame, want 1002"
        assert not any(op == nh.OP_TEXT for op, _ in frames), \
            f"an unmasked frame was processed: {frames}"
    finally:
        raw.close()


def test_malformed_json_gets_error_and_connection_survives(cluster):
    nats, _redis, A, B = cluster

    async def body():
        c = await Client.connect(A, "alice")
        other = await Client.connect(B, "bob")
        try:
            for bad in ("{not json", "", "[1,2]", "42", '"just a string"', "null",
                        '{"roomId":"r"}', '{"action":5}', '{"action":null}',
                        '{"action":"joinRoom"}', '{"action":"joinRoom","roomId":5}',
                        '{"action":"sendMessage","roomId":"r"}'):
                await c.send(bad)
                f = await c.expect("error", what=f"error for {bad!r}")
                assert f["code"] == "bad_request", f"{bad!r} → {f}"
                assert isinstance(f.get("message"), str), f
            assert c.close_code is None
            await c.join("r")
            await other.join("r")
            await nats.await_sub_count(ROOM_SUBJECT.format("t1", "r"), 2)
            ack = await c.say("r", {"after": "errors"})
            await other.expect("message", id=ack["id"])
        finally:
            await close_all(c, other)
    run(body())


BAD_IDS = ["a.b", "a*", "", "x" * 129, "a b", "a>b", ">", "a\tb", "a\nb", "a\u0001b",
           "a\u007fb", "a:b", "{a}"]


def test_invalid_ids_are_bad_request_and_connection_stays_open(cluster):
    _nats, _redis, A, _B = cluster

    async def body():
        c = await Client.connect(A, "alice")
        try:
            failures = []
            for bad in BAD_IDS:
                for action, fields in (("joinRoom", {"roomId": bad}),
                                       ("sendMessage", {"roomId": bad, "message": "x"}),
                                       ("leaveRoom", {"roomId": bad}),
                                       ("presence", {"roomId": bad}),
                                       ("sendToUser", {"userId": bad, "message": "x"})):
                    rid = await c.action(action, **fields)
                    f = await c.expect(None, pred=lambda f, rid=rid: f.get("requestId") == rid,
                                       what=f"reply to {action} {bad!r}")
                    if f.get("type") != "error" or f.get("code") != "bad_request":
                        failures.append((action, bad, f))
            assert not failures, f"invalid ids not refused with bad_request: {failures}"
            await c.assert_open()
            # 128 bytes is still valid.
            j = await c.join("r" * 128)
            assert j["roomId"] == "r" * 128
        finally:
            await c.close()
    run(body())


def test_unknown_action_with_routes_off(harness):
    node = harness.node("solo", args=["--routes", "off"])

    async def body():
        c = await Client.connect(node, "alice")
        try:
            rid = await c.action("doTheDance", step=1)
            f = await c.expect_error("unknown_action", rid)
            assert isinstance(f.get("message"), str)
            await c.assert_open()
        finally:
            await c.close()
    run(body())


def test_unknown_action_with_routes_on_and_no_backend(harness):
    nats = harness.nats()
    redis = harness.redis()
    node = harness.node("A", nats=nats, redis=redis, args=["--route-timeout", "2"])

    async def body():
        c = await Client.connect(node, "alice")
        try:
            t0 = time.monotonic()
            rid = await c.action("doTheDance")
            await c.expect_error("unknown_action", rid, timeout=t(10))
            assert time.monotonic() - t0 < t(8), "no-responder answer took too long"
            await c.assert_open()
        finally:
            await c.close()
    run(body())


# ---------------------------------------------------------------------------------------
# Outages and modes
# ---------------------------------------------------------------------------------------

def test_nats_restart_delivery_resumes(cluster, harness):
    nats, _redis, A, B = cluster
    subj = ROOM_SUBJECT.format("t1", "survive")

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(B, "bob")
        try:
            await alice.join("survive")
            await bob.join("survive")
            await nats.await_sub_count(subj, 2)
            ack = await alice.say("survive", "before")
            await bob.expect("message", id=ack["id"])

            rc, _ = await asyncio.to_thread(nats.stop)
            # The nodes notice: readiness goes false, but nothing crashes.
            await nh.async_wait_until(lambda: A.get("/readyz", timeout=1)[0] == 503, t(15),
                                      what="A /readyz == 503 while NATS is down")
            assert A.alive() and B.alive()

            await asyncio.to_thread(harness.restart, nats)
            t0 = time.monotonic()
            await nh.async_wait_until(lambda: A.get("/readyz", timeout=1)[0] == 200 and
                                      B.get("/readyz", timeout=1)[0] == 200, t(30),
                                      what="both nodes ready again after NATS restart")
            await nats.await_sub_count(subj, 2, timeout=t(30))
            # Delivery resumes: retry sending until one arrives (messages published while
            # a node was still reconnecting may be lost; that is allowed).
            deadline = time.monotonic() + t(20)
            delivered = None
            n = 0
            while delivered is None:
                n += 1
                a = await alice.say("survive", f"after-{n}", timeout=t(5))
                try:
                    delivered = await bob.expect("message", id=a["id"], timeout=1.0)
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no delivery A→B within {t(20)}s after NATS "
                                             f"came back ({n} attempts)") from None
            took = time.monotonic() - t0
            assert took < t(30), f"delivery resumed only after {took:.1f}s"
            # And the other direction.
            a = await bob.say("survive", "b-to-a")
            await alice.expect("message", id=a["id"])
        finally:
            await close_all(alice, bob)
    run(body())


async def _chat_two_clients(node):
    alice = await Client.connect(node, "alice")
    bob = await Client.connect(node, "bob")
    try:
        await alice.join("lobby")
        j = await bob.join("lobby")
        assert set(member_ids(j)) >= {"alice", "bob"}, j
        ack = await alice.say("lobby", {"hi": "bob"})
        m = await bob.expect("message", id=ack["id"])
        assert m["userId"] == "alice" and m["message"] == {"hi": "bob"}, m
        await alice.expect("message", id=ack["id"])
        await bob.action("sendToUser", userId="alice", message="psst")
        d = await alice.expect("direct")
        assert d["userId"] == "bob" and d["message"] == "psst", d
    finally:
        await close_all(alice, bob)


def test_standalone_node_is_a_chat_server(harness):
    node = harness.node("solo")  # neither --nats nor --redis
    assert node.get("/readyz")[0] == 200
    run(_chat_two_clients(node))


def test_only_one_of_nats_and_redis_refuses_to_start(harness):
    rc, out = harness.run_node(["--nats", "nats://127.0.0.1:4222"], name="only-nats")
    assert rc != 0, f"node with only --nats exited {rc}:\n{out}"
    assert "redis" in out.lower(), f"the refusal should say that --redis is missing:\n{out}"
    rc, out = harness.run_node(["--redis", "redis://127.0.0.1:6379"], name="only-redis")
    assert rc != 0, f"node with only --redis exited {rc}:\n{out}"
    assert "nats" in out.lower(), f"the refusal should say that --nats is missing:\n{out}"

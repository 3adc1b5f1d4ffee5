"""Redis AUTH with an ACL user (redis://user:pass@host:port/db): a redis-server whose
default user is disabled and whose `natter` user has either every permission or only
what natter needs (docs/presence.md); a %-encoded password; a wrong password keeps the
node not ready without crashing it; a Sentinel that requires a password, monitoring an
ACL-protected primary."""

import json
import socket
import urllib.parse

from natter_harness import HOST, Client, Redis, close_all, run, t, wait_until
from test_sentinel import MASTER, Sentinel, command, resp

FULL_ACL = ["natter", "on", ">pw", "~*", "&*", "+@all"]
# What natter needs, documented in docs/presence.md (keys under the default prefix only).
NARROW_ACL = ["natter", "on", ">pw", "~natter:*", "resetchannels", "-@all", "+@read",
              "+@write", "+@scripting", "+time", "+role", "+select", "+ping"]


def acl_redis(harness, acl, password="pw"):
    log, _ = harness._log("redis-acl")
    r = Redis(log)
    acl = [a if a != ">pw" else ">" + password for a in acl]
    r.argv += ["--user", *acl, "--user", "default", "off", "--dir", harness.dir]
    harness._start(r)
    wait_until(lambda: r.alive() and b"NOAUTH" in command(r.port, "PING"), t(10),
               what="ACL redis up (default user off)")
    return r


def url(r, user, password, db=""):
    return (f"redis://{urllib.parse.quote(user, safe='')}:"
            f"{urllib.parse.quote(password, safe='')}@{HOST}:{r.port}{db}")


async def presence_works(a, b):
    alice = await Client.connect(a, "alice")
    bob = await Client.connect(b, "bob")
    try:
        await alice.join("r")
        await bob.join("r")
        await alice.expect("presence", userId="bob", status="online", timeout=t(5))
        rid = await bob.action("presence", roomId="r")
        f = await bob.expect_reply(rid, "members")
        assert sorted(m["userId"] for m in f["members"]) == ["alice", "bob"]
        await bob.close()
        await alice.expect("presence", userId="bob", status="offline", timeout=t(5))
    finally:
        await close_all(alice, bob)


def no_redis_errors(*nodes):
    for n in nodes:
        text = n.log_text(200000)
        assert "redis command failed" not in text, text[-4000:]


def test_acl_user_full_and_db(harness):
    nats = harness.nats()
    r = acl_redis(harness, FULL_ACL)
    a = harness.node("A", nats=nats, redis=url(r, "natter", "pw", "/3"))
    b = harness.node("B", nats=nats, redis=url(r, "natter", "pw", "/3"))
    run(presence_works(a, b))
    no_redis_errors(a, b)
    # the data went to db 3, as the natter user
    with socket.create_connection((HOST, r.port), timeout=2) as s:
        s.sendall(resp("AUTH", "natter", "pw") + resp("INFO", "keyspace"))
        info = b""
        while b"db3" not in info and len(info) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            info += chunk
    assert b"db3:keys=" in info, info


def test_acl_user_with_only_what_natter_needs(harness):
    nats = harness.nats()
    r = acl_redis(harness, NARROW_ACL)
    a = harness.node("A", nats=nats, redis=url(r, "natter", "pw"))
    b = harness.node("B", nats=nats, redis=url(r, "natter", "pw"))
    run(presence_works(a, b))
    # a dead node is reaped through the same user (the scripts' own calls are checked too)
    b.kill()
    wait_until(lambda: "reaped dead node" in a.log_text(200000), t(10), what="B reaped by A")
    no_redis_errors(a)


def test_acl_password_percent_encoded(harness):
    nats = harness.nats()
    pw = "p@ss:w/rd %?#"
    r = acl_redis(harness, FULL_ACL, password=pw)
    a = harness.node("A", nats=nats, redis=url(r, "natter", pw))
    assert a.get("/readyz")[0] == 200
    no_redis_errors(a)


def test_acl_wrong_password_not_ready(harness):
    nats = harness.nats()
    r = acl_redis(harness, FULL_ACL)
    a = harness.node("A", nats=nats, redis=url(r, "natter", "nope"), wait=False)
    wait_until(lambda: a.alive() and a.get("/healthz", timeout=1)[0] == 200, t(10),
               what="node up")
    wait_until(lambda: "WRONGPASS" in a.log_text(), t(10), what="AUTH refused in the log")
    assert a.get("/readyz")[0] == 503
    logged = json.dumps(a.log_lines_json())  # the node's own lines, not the harness's argv
    assert "nope" not in logged, "the password must not be logged"
    # no user at all: the disabled default user refuses
    b = harness.node("B", nats=nats, redis=f"redis://{HOST}:{r.port}", wait=False)
    wait_until(lambda: b.alive() and b.get("/healthz", timeout=1)[0] == 200, t(10),
               what="node up")
    assert b.get("/readyz")[0] == 503 and a.alive() and b.alive()

    async def degraded():
        c = await Client.connect(a, "alice")
        try:
            j = await c.join("r")  # joins still work on the node
            assert [m["userId"] for m in j["members"]] == ["alice"]
        finally:
            await close_all(c)
    run(degraded())


def test_sentinel_with_password_and_acl_primary(harness):
    """A real sentinel with requirepass, monitoring a primary whose default user is off:
    the node authenticates to both (--redis-sentinel-password, --redis user:pass)."""
    nats = harness.nats()
    r = acl_redis(harness, FULL_ACL)
    log, _ = harness._log("sentinel")
    s = harness._start(Sentinel(log, r.port, conf_extra=[
        "requirepass spw", f"sentinel auth-user {MASTER} natter",
        f"sentinel auth-pass {MASTER} pw"]))
    wait_until(lambda: s.alive() and b"NOAUTH" in command(s.port, "PING"), t(10),
               what="sentinel up with requirepass")
    args = ["--redis-sentinel", f"{HOST}:{s.port}", "--redis-master", MASTER,
            "--redis-sentinel-password", "spw"]
    a = harness.node("A", nats=nats, redis="redis://natter:pw@ignored", args=args, ready=True)
    b = harness.node("B", nats=nats, redis="redis://natter:pw@ignored", args=args, ready=True)
    run(presence_works(a, b))
    no_redis_errors(a, b)
    assert "refused AUTH" not in a.log_text()

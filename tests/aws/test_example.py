"""examples/apigw-lambda end to end: a node whose routes go to the example's HTTP adapter
(Lambda handlers unchanged, AWS SDK v3 inside), two clients, a refused one, a custom
route answering the caller and a broadcast through postToConnection. Run by run.sh."""

import asyncio
import os

HERE = os.path.dirname(os.path.abspath(__file__))

import natter_harness as nh
from natter_harness import Client, close_all, run, t

EXAMPLE = os.path.join(HERE, "..", "..", "examples", "apigw-lambda")
AKID, SECRET = "AKIAEXAMPLEAPP000001", "example-app-secret-key/0123456789"


def test_migration_example_end_to_end(harness):
    port = nh.free_port()
    api_port = nh.free_port()
    log, name = harness._log("adapter")
    adapter = harness._start(nh.Proc(name, ["node", os.path.join(EXAMPLE, "adapter.js"),
                                            "--port", str(port)], log, env={
        "APIGW_ENDPOINT": f"http://{nh.HOST}:{api_port}/prod",
        "AWS_ACCESS_KEY_ID": AKID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "eu-west-3"}))
    nh.wait_until(lambda: any(r.get("ready") for r in adapter.log_lines_json()), t(15),
                  what="adapter ready")
    A = harness.node("A", api_port=api_port, args=[
        "--integration-url", f"http://{nh.HOST}:{port}/",
        "--integration-routes", "$connect,$disconnect,whoami,sendMessage",
        "--aws-access-key-id", AKID, "--aws-secret-access-key", SECRET])

    async def body():
        alice = await Client.connect(A, "alice")
        bob = await Client.connect(A, "bob")
        try:
            # onConnect refuses a banned user with the handler's status
            tok = A.token("mallory")
            st, _h, _b = await asyncio.to_thread(nh.raw_http, A.port, nh.upgrade_request(
                f"/ws?token={tok}", f"{nh.HOST}:{A.port}"), timeout=t(10))
            assert st == 403, st
            # a custom route answers the caller
            await alice.send({"action": "whoami"})
            w = await alice.expect("whoami")
            assert w["userId"] == "alice" and w["connectionId"] == alice.welcome["connectionId"]
            # the broadcast: sendMessage -> postToConnection (SigV4, stage) for each member
            await bob.send({"action": "sendMessage", "data": "hello from bob"})
            for c in (alice, bob):
                m = await c.expect("chat")
                assert m == {"type": "chat", "from": "bob", "data": "hello from bob"}, m
            await alice.close()
            await bob.send({"action": "sendMessage", "data": "alice left"})
            m = await bob.expect("chat", data="alice left")
            assert m["from"] == "bob"
            await alice.expect_none("chat", 0.3, data="alice left")
        finally:
            await close_all(alice, bob)
        assert "handler failed" not in adapter.log_text()
    run(body(), timeout=t(90))

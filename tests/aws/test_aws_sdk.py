"""The AWS SDK v3 ApiGatewayManagementApi client (npm, pinned in tests/aws/package.json)
against a real node: SigV4 with a stage in the endpoint, PostToConnection delivers,
GetConnection returns dates, DeleteConnection closes, a gone id raises GoneException, a
wrong secret ForbiddenException. Run by tests/aws/run.sh."""

import asyncio
import datetime
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))

import natter_harness as nh
from natter_harness import Client, close_all, run, t

AKID = "AKIANATTERTEST000001"
SECRET = "natter-test-secret/access+key0123456789"


def sdk(node, op, cid, secret=SECRET, stage="prod", region="eu-west-3", data=None):
    arg = {"endpoint": f"http://{nh.HOST}:{node.api_port}/{stage}", "region": region,
           "accessKeyId": AKID, "secretAccessKey": secret, "op": op, "connectionId": cid}
    if data is not None:
        arg["data"] = data
    p = subprocess.run(["node", os.path.join(HERE, "sdk_call.mjs"), json.dumps(arg)],
                       capture_output=True, text=True, timeout=t(30), cwd=HERE)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def parse(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_aws_sdk_v3_client(harness):
    A = harness.node("A", args=["--aws-access-key-id", AKID, "--aws-secret-access-key", SECRET])

    async def body():
        alice = await Client.connect(A, "alice", headers={"User-Agent": "aws-sdk-test/1"})
        cid = alice.welcome["connectionId"]
        try:
            r = await asyncio.to_thread(sdk, A, "post", cid, data='{"type":"notice","n":1}')
            assert r == {"ok": True, "status": 200}, r
            f = await alice.expect("notice")
            assert f["n"] == 1, f
            # another region, no stage: the same key pair works
            r = await asyncio.to_thread(sdk, A, "post", cid, stage="", region="us-east-1",
                                        data='{"type":"notice","n":2}')
            assert r["ok"], r
            await alice.expect("notice", n=2)

            # over --max-message-bytes (64 KiB by default)
            r = await asyncio.to_thread(sdk, A, "post", cid, data="x" * 70000)
            assert not r["ok"] and r["name"] == "PayloadTooLargeException", r
            assert r["status"] == 413, r

            r = await asyncio.to_thread(sdk, A, "get", cid)
            assert r["ok"] and r["connectedAtIsDate"] and r["lastActiveAtIsDate"], r
            now = datetime.datetime.utcnow()
            assert abs((now - parse(r["connectedAt"])).total_seconds()) < 60, r
            assert parse(r["lastActiveAt"]) >= parse(r["connectedAt"]), r
            assert r["identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "aws-sdk-test/1"}, r

            r = await asyncio.to_thread(sdk, A, "post", cid, secret="wrong" + SECRET, data="x")
            assert not r["ok"] and r["name"] == "ForbiddenException" and r["status"] == 403, r
            await alice.expect_none("<not-json>", 0.3)

            r = await asyncio.to_thread(sdk, A, "delete", cid)
            assert r == {"ok": True, "status": 204}, r
            code, _ = await alice.wait_closed(t(10))
            assert code == 1000, code

            for op in ("post", "get", "delete"):
                r = await asyncio.to_thread(sdk, A, op, cid, data="late")
                assert not r["ok"] and r["name"] == "GoneException" and r["status"] == 410, r
        finally:
            await close_all(alice)
    run(body(), timeout=t(120))

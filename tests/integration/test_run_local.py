"""scripts/run-local.sh, the run command: a cluster behind haproxy (rendered from the one
template, scripts/haproxy.cfg.in), dev tokens, chat across nodes through the public port,
the HTTP API only on the internal port (the public one refuses /v1/, /@connections/ and
/metrics), and a clean stop on SIGTERM."""
import re

import json
import os
import signal
import urllib.parse

import natter_harness as nh
from natter_harness import Client, close_all, run, t

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _pids(run_dir):
    out = {}
    with open(os.path.join(run_dir, "pids")) as f:
        for line in f:
            name, pid = line.split()
            out[name] = int(pid)
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_run_local_cluster_behind_haproxy(harness):
    port, api_port = nh.free_port(), nh.free_port()
    while api_port == port:
        api_port = nh.free_port()
    run_dir = os.path.join(harness.dir, "run")
    script = nh.Proc("run-local", ["bash", os.path.join(ROOT, "scripts", "run-local.sh"),
                                   "--no-install", "--bin", harness.binary, "--port", str(port),
                                   "--api-port", str(api_port),
                                   "--nodes", "2", "--run-dir", run_dir],
                     os.path.join(harness.dir, "run-local.log"))
    harness._start(script)
    try:
        nh.wait_until(lambda: script.alive() and
                      "Ctrl-C stops everything" in script.log_text(), t(90),
                      what="run-local.sh to report the cluster as running")
        base = f"http://127.0.0.1:{port}"
        assert nh.http_get(base + "/healthz")[0] == 200
        st, page = nh.http_get(base + "/")
        assert st == 200 and b"<" in page, f"demo page answered {st}"
        assert f"http://127.0.0.1:{port}/" in script.log_text(), "demo URL not printed"
        api = f"http://127.0.0.1:{api_port}"
        admin = re.search(r"Admin token:\s+(\S+)", script.log_text()).group(1)
        auth = {"Authorization": f"Bearer {admin}"}

        # The public port serves no part of the HTTP API, token or not.
        for path in ("/v1/tenants/demo/rooms/lobby/messages", "/@connections/abc",
                     "/metrics", "/v1/", "/@connections"):
            st, _ = nh.http_get(base + path, headers=auth)
            assert st == 404, f"public port answered {path} with {st}"
            st, _, _ = nh.http_request(base + path, method="POST", body={"message": "x"},
                                       headers=auth)
            assert st == 404, f"public port answered POST {path} with {st}"
        # The internal port does: metrics, and the API with the admin token only.
        st, body = nh.http_get(api + "/metrics")
        assert st == 200 and b"natter_connections " in body, f"API /metrics answered {st}"
        st, _, _ = nh.http_request(api + "/v1/tenants/demo/rooms/lobby/messages",
                                   method="POST", body={"message": "x"})
        assert st == 401, f"API without a token answered {st}"

        def dev_token(user):
            st, body = nh.http_get(base + "/dev/token?" + urllib.parse.urlencode(
                {"user": user, "tenant": "demo"}))
            assert st == 200, f"/dev/token answered {st}: {body!r}"
            try:
                doc = json.loads(body)
                return doc["token"] if isinstance(doc, dict) else doc
            except ValueError:
                return body.decode().strip()

        async def chat():
            ws_base = f"ws://127.0.0.1:{port}/ws"
            alice = await Client.connect(ws_base, "alice", token=dev_token("alice"))
            bob = await Client.connect(ws_base, "bob", token=dev_token("bob"))
            try:
                assert alice.welcome["tenantId"] == "demo"
                await alice.join("lobby")
                await bob.join("lobby")
                # leastconn spreads the two clients over both nodes; wait until the room
                # is subscribed wherever a member is, then chat across.
                for _ in range(int(t(20) / 0.5)):
                    ack = await alice.say("lobby", "through haproxy")
                    try:
                        await bob.expect("message", id=ack["id"], timeout=0.5)
                        break
                    except AssertionError:
                        continue
                else:
                    raise AssertionError("no message delivered through haproxy")
                # a backend posts through the internal API port; members get it
                st, _, body = nh.http_request(api + "/v1/tenants/demo/rooms/lobby/messages",
                                              method="POST", body={"message": "from the API"},
                                              headers=auth)
                assert st in (200, 202), f"API post answered {st}: {body!r}"
                await bob.expect("message", message="from the API", timeout=t(5))
            finally:
                await close_all(alice, bob)
        run(chat())
        pids = _pids(run_dir)
        assert set(pids) >= {"nats", "redis", "node-1", "node-2", "haproxy"}, pids
    finally:
        pids = _pids(run_dir) if os.path.exists(os.path.join(run_dir, "pids")) else {}
        rc, killed = script.stop(signal.SIGTERM, timeout=t(40))
    assert not killed, "run-local.sh did not stop within 40s of SIGTERM"
    left = {n: p for n, p in pids.items() if _alive(p)}
    for p in left.values():
        os.kill(p, signal.SIGKILL)
    assert not left, f"run-local.sh left processes running: {left}"
    for name in sorted(os.listdir(run_dir)):
        if name.startswith("node-") and name.endswith(".log"):
            with open(os.path.join(run_dir, name), errors="replace") as f:
                text = f.read()
            m = nh.SANITIZER_PATTERNS.search(text)
            assert not m, f"sanitizer report in {name}:\n{text[max(0, m.start() - 200):][:6000]}"

"""HTTPS to backends (--integration-url and --webhook-url with https://, trusting a private
CA through --integration-ca-file): a real node, a real HTTPS backend (integ_backend.Backend
with Python's ssl module, in this process), real WebSocket clients. A CA and the server
certificates are made with openssl for each test. See docs/integrations.md "HTTPS"."""

import asyncio
import json

import pytest

import natter_harness as nh
from natter_harness import Client, close_all, run, t
from integ_backend import Answer, Backend
from test_webhooks import SECRET, verify, wh_args


class Pki:
    def __init__(self, directory):
        self.ca = nh.make_ca(directory)
        self.cafile = self.ca[0]
        self.good = nh.make_signed_cert(directory, self.ca, "good")
        # signed by the same CA, for another host name only
        self.other_host = nh.make_signed_cert(directory, self.ca, "other",
                                              san="DNS:other.example")


@pytest.fixture
def pki(tmp_path):
    return Pki(str(tmp_path / "pki"))


def rule(ev):
    rc = ev["requestContext"]
    if rc["routeKey"] == "echo":
        return Answer(200, {"type": "echo", "body": ev["body"],
                            "connectionId": rc["connectionId"]})
    return Answer(200)


@pytest.fixture
def backend(pki):
    b = Backend(rule, tls=pki.good)
    yield b
    b.close()


def integ_args(b, *extra, routes="$connect,$disconnect,echo"):
    return ["--integration-url", b.url, "--integration-routes", routes,
            "--integration-timeout", "3", *extra]


def failed_lines(node, msg):
    return [ln for ln in node.log_lines_json() if ln.get("msg") == msg]


async def healthy(node, user):
    """The node still serves: /healthz, a new client, a built-in action."""
    assert node.get("/healthz")[0] == 200
    c = await Client.connect(node, user)
    try:
        await c.join("lobby")
        await c.say("lobby", {"still": "here"})
        await c.assert_open()
    finally:
        await close_all(c)


def test_connect_and_message_route_over_https(harness, pki, backend):
    assert backend.url.startswith("https://")
    A = harness.node("A", args=integ_args(backend, "--integration-ca-file", pki.cafile))

    async def body():
        c = await Client.connect(A, "alice")
        cid = c.welcome["connectionId"]
        try:
            (conn,) = backend.events("$connect")
            assert conn["requestContext"]["connectionId"] == cid, conn
            for i in range(10):
                await c.send({"action": "echo", "n": i})
                e = await c.expect("echo")
                assert json.loads(e["body"]) == {"action": "echo", "n": i} and \
                    e["connectionId"] == cid, e
            # the TLS connection is kept alive and reused ($connect + 10 invocations)
            assert backend.connections <= 2, backend.connections
        finally:
            await close_all(c)
        await asyncio.to_thread(backend.wait_events, "$disconnect")
        m = nh.node_metrics(A)
        assert m["natter_integration_failures_total"] == 0, m
        assert m["natter_integration_invocations_total"] == 12, m
    run(body())


def test_signed_webhooks_over_https(harness, pki):
    hook = Backend(lambda req: Answer(200), tls=pki.good)
    try:
        # the CA from the environment this time
        A = harness.node("A", args=wh_args(hook.url),
                         env={"NATTER_INTEGRATION_CA_FILE": pki.cafile})

        async def body():
            c = await Client.connect(A, "alice")
            await c.join("lobby")
            await close_all(c)

            def events():
                out = []
                for req in hook.events():
                    assert verify(SECRET, req["<raw>"], req["<headers>"]["X-Natter-Signature"])
                    out += [(e["type"], e["userId"]) for e in req["events"]]
                return out
            want = {("connect", "alice"), ("join", "alice"), ("online", "alice"),
                    ("leave", "alice"), ("offline", "alice"), ("disconnect", "alice")}
            await asyncio.to_thread(nh.wait_until, lambda: want <= set(events()), t(15),
                                    what="every webhook event over https")
            # the endpoint records a batch before it answers: the node counts it after
            await asyncio.to_thread(nh.wait_until, lambda: nh.node_metrics(A)
                                    ["natter_webhook_delivered_total"] == len(events()), t(10),
                                    what="every event counted as delivered")
            m = nh.node_metrics(A)
            assert m["natter_webhook_retries_total"] == 0, m
            assert m["natter_webhook_delivered_total"] == len(events()) == 6, m
        run(body())
    finally:
        hook.close()


def test_untrusted_backend_fails_cleanly_without_the_ca_file(harness, pki, backend):
    """The private CA is not among the system's: every invocation fails verification, the
    caller gets the documented error, the node keeps serving."""
    hook = Backend(lambda req: Answer(200), tls=pki.good)
    try:
        A = harness.node("A", args=integ_args(backend, routes="echo") + wh_args(hook.url))
        B = harness.node("B", args=integ_args(backend))

        async def body():
            c = await Client.connect(A, "alice")
            try:
                for i in range(3):
                    await c.send({"action": "echo", "requestId": i})
                    e = await c.expect("error", requestId=i)
                    assert e["code"] == "backend_error" and e["status"] == 502, e
                await c.assert_open()
            finally:
                await close_all(c)
            # $connect through an untrusted backend: the upgrade is refused with 502
            st, _h, _b = await asyncio.to_thread(nh.raw_http, B.port, nh.upgrade_request(
                f"/ws?token={B.token('bob')}", f"{nh.HOST}:{B.port}"), timeout=t(10))
            assert st == 502, st
            assert not backend.events(), backend.events()  # no request ever got through
            # webhooks: retried, never delivered, nothing reached the endpoint
            await asyncio.to_thread(nh.wait_until, lambda: nh.node_metrics(A)
                                    ["natter_webhook_retries_total"] >= 2, t(10),
                                    what="webhook retries")
            assert not hook.events()
            m = nh.node_metrics(A)
            assert m["natter_integration_failures_total"] == 3, m
            assert m["natter_webhook_delivered_total"] == 0, m
            mb = nh.node_metrics(B)
            assert mb["natter_integration_failures_total"] == 1, mb
            assert mb["natter_integration_connect_refused_total"] == 1, mb
            # the log says why
            lines = failed_lines(A, "integration invocation failed")
            assert len(lines) == 3 and all("certificate problem" in ln["detail"]
                                           for ln in lines), lines
            lines = failed_lines(A, "webhook delivery failed")
            assert lines and "certificate problem" in lines[0]["detail"], lines
            await healthy(A, "carol")
        run(body())
    finally:
        hook.close()


def test_certificate_for_another_host_name_fails_verification(harness, pki):
    """Signed by the trusted CA, but for other.example: refused (host name checked)."""
    other = Backend(rule, tls=pki.other_host)
    try:
        A = harness.node("A", args=integ_args(other, "--integration-ca-file", pki.cafile,
                                              routes="echo"))

        async def body():
            c = await Client.connect(A, "alice")
            try:
                await c.send({"action": "echo", "requestId": "x"})
                e = await c.expect("error", requestId="x")
                assert e["code"] == "backend_error" and e["status"] == 502, e
            finally:
                await close_all(c)
            assert not other.events(), other.events()
            assert nh.node_metrics(A)["natter_integration_failures_total"] == 1
            (ln,) = failed_lines(A, "integration invocation failed")
            # the chain verified (same CA as the other tests), the name did not
            assert "host name '127.0.0.1'" in ln["detail"], ln
            assert "certificate problem" not in ln["detail"], ln
            await healthy(A, "bob")
        run(body())
    finally:
        other.close()

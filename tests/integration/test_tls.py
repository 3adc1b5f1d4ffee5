"""TLS at the node (docs/tls-compression.md): wss end to end with TLS 1.3, older versions
refused (1.1 always, 1.2 unless --tls-min-version 1.2), the HTTP API on the same
certificate, certificate reload on SIGHUP without dropping connections, and bad
configurations refused at startup.

Certificates are made at test time with `openssl req` (self-signed, given to the client
as its only CA)."""

import asyncio
import os
import signal
import socket
import ssl

import pytest

import natter_harness as nh
from natter_harness import Client, close_all, run, t


metrics = nh.node_metrics


def tls_node(harness, name="tls", args=(), cert=None, **kw):
    cert = cert or nh.make_cert(os.path.join(harness.dir, "certs"), name)
    return harness.node(name, args=args, tls=cert, **kw), cert


def version_of(client):
    return client.ws.transport.get_extra_info("ssl_object").version()


def peer_cert_der(client):
    return client.ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def old_client_context(cafile, version):
    """A client that offers at most `version` (TLSv1_1 or TLSv1_2). OpenSSL's security
    level 0 lets the client itself offer TLS 1.1 (Debian's default refuses to), so the
    refusal observed is the server's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.check_hostname = False
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = version
    return ctx


def tls_handshake(port, ctx, timeout=5.0):
    """Plain TLS handshake; returns the negotiated version or raises ssl.SSLError."""
    with socket.create_connection((nh.HOST, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.version()


# ---------------------------------------------------------------------------------------


def test_wss_end_to_end_tls13(harness):
    node, (cert, _) = tls_node(harness)

    async def body():
        a = await Client.connect(node, "alice", name="alice")
        b = await Client.connect(node, "bob", name="bob")
        try:
            assert version_of(a) == "TLSv1.3"
            assert a.ws.transport.get_extra_info("ssl_object").selected_alpn_protocol() \
                in (None, "http/1.1")
            await a.join("lobby")
            await b.join("lobby")
            big = "x" * 60_000  # several TLS records
            await a.say("lobby", {"text": "hello over tls", "big": big})
            m = await b.expect("message", roomId="lobby")
            assert m["message"]["text"] == "hello over tls"
            assert m["message"]["big"] == big
            await a.expect("message", roomId="lobby")
            await b.assert_open()
        finally:
            await close_all(a, b)

    run(body())
    # the same certificate serves /healthz on --listen and the API (https)
    assert node.get("/healthz")[0] == 200
    m = metrics(node)
    assert m["natter_tls_handshakes_total"] >= 2
    assert m.get("natter_tls_handshake_failures_total", 0) == 0


def test_tls_1_1_refused_and_1_2_refused_by_default(harness):
    node, (cert, _) = tls_node(harness)
    for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2):
        with pytest.raises(ssl.SSLError):
            tls_handshake(node.port, old_client_context(cert, version))
    # refused by the server (an alert after reading the ClientHello), counted there
    nh.wait_until(lambda: metrics(node)["natter_tls_handshake_failures_total"] >= 2, t(5),
                  what="two failed handshakes counted")
    assert tls_handshake(node.port, nh.client_ssl_context(cert)) == "TLSv1.3"


def test_tls_1_2_allowed_with_min_version(harness):
    node, (cert, _) = tls_node(harness, args=["--tls-min-version", "1.2"])
    assert tls_handshake(node.port, old_client_context(cert, ssl.TLSVersion.TLSv1_2)) == \
        "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        tls_handshake(node.port, old_client_context(cert, ssl.TLSVersion.TLSv1_1))

    async def body():
        c = await Client.connect(node, "carol", ssl=old_client_context(cert,
                                                                      ssl.TLSVersion.TLSv1_2))
        try:
            assert version_of(c) == "TLSv1.2"
            await c.join("r")
            await c.say("r", "over 1.2")
            await c.expect("message", roomId="r")
        finally:
            await close_all(c)

    run(body())


def test_certificate_reload_on_sighup(harness):
    certs = os.path.join(harness.dir, "certs")
    cert_a, key = nh.make_cert(certs, "live", cn="natter-a")
    der_a = cert_der(cert_a)
    node, _ = tls_node(harness, cert=(cert_a, key))
    ca_a = os.path.join(certs, "a.pem")
    with open(cert_a) as src, open(ca_a, "w") as dst:
        dst.write(src.read())

    async def body():
        old = await Client.connect(node, "old", name="old", ssl=nh.client_ssl_context(ca_a))
        try:
            assert peer_cert_der(old) == der_a
            await old.join("r")
            # new certificate and key at the same paths, then SIGHUP
            nh.make_cert(certs, "live", cn="natter-b")
            der_b = cert_der(cert_a)
            assert der_b != der_a
            os.kill(node.pid, signal.SIGHUP)
            node.ssl_context = nh.client_ssl_context(cert_a)  # the harness trusts B now
            await nh.async_wait_until(lambda: metrics(node)["natter_tls_reloads_total"] == 1,
                                      t(5), what="the reload")
            # the established connection is untouched
            await old.assert_open()
            new = await Client.connect(node, "new", name="new",
                                       ssl=nh.client_ssl_context(cert_a))
            try:
                assert peer_cert_der(new) == der_b
                await new.join("r")
                await new.say("r", "after reload")
                await old.expect("message", roomId="r", message="after reload")
                await new.expect("message", roomId="r", message="after reload")
            finally:
                await close_all(new)
            # a client that trusts only the old certificate no longer gets in
            with pytest.raises(ssl.SSLError):
                await asyncio.to_thread(tls_handshake, node.port, nh.client_ssl_context(ca_a))
            # a broken reload keeps the current certificate
            with open(key, "w") as f:
                f.write("not a key\n")
            os.kill(node.pid, signal.SIGHUP)
            await nh.async_wait_until(
                lambda: metrics(node)["natter_tls_reload_failures_total"] == 1, t(5),
                what="the failed reload")
            assert await asyncio.to_thread(tls_handshake, node.port,
                                           nh.client_ssl_context(cert_a)) == "TLSv1.3"
            await old.assert_open()
        finally:
            await close_all(old)

    run(body())
    assert any(r.get("msg") == "tls reload failed: keeping the current certificate"
               for r in node.log_lines_json())


def test_api_tls_off_and_garbage_on_tls_port(harness):
    node, (cert, _) = tls_node(harness, args=["--api-tls", "off"])
    assert node.url("/", api=True).startswith("http://")
    assert node.get("/healthz", api=True)[0] == 200          # plain HTTP API
    assert node.get("/healthz")[0] == 200                    # https on --listen
    # plain HTTP on the TLS port: refused at the handshake, the node carries on
    with socket.create_connection((nh.HOST, node.port), timeout=t(5)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(t(5))
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/")
    nh.wait_until(lambda: metrics(node)["natter_tls_handshake_failures_total"] >= 1, t(5),
                  what="the failed handshake counted")

    async def body():
        c = await Client.connect(node, "dave")
        await c.assert_open()
        await close_all(c)

    run(body())


def test_bad_tls_configuration_refused_at_start(harness):
    certs = os.path.join(harness.dir, "certs")
    cert, key = nh.make_cert(certs, "ok")
    other_cert, other_key = nh.make_cert(certs, "other")
    cases = [
        (["--tls-cert", cert], "go together"),
        (["--tls-cert", cert, "--tls-key", os.path.join(certs, "missing.key")],
         "cannot load the private key"),
        (["--tls-cert", cert, "--tls-key", other_key], "mismatch"),
        (["--tls-cert", cert, "--tls-key", key, "--tls-min-version", "1.1"],
         "--tls-min-version"),
        (["--api-tls", "on"], "--api-tls on needs"),
    ]
    for args, why in cases:
        rc, out = harness.run_node(args, name="badtls")
        assert rc != 0, (args, out)
        assert why in out, (args, out)


def _raw_tls_member(node, user, room):
    raw = nh.RawWS(node.port, "/ws?token=" + node.token(user), ssl_context=node.ssl_context,
                   rcvbuf=4096)
    assert raw.recv_json()["type"] == "welcome"
    raw.send_text('{"action":"joinRoom","roomId":"%s"}' % room)
    while raw.recv_json()["type"] != "joined":
        pass
    return raw


async def _flood(node, room, count, size):
    c = await Client.connect(node, "sender")
    await c.join(room)
    for i in range(count):
        await c.say(room, {"i": i, "pad": "p" * size})
    return c


def test_tls_stalled_reader_gets_everything(harness):
    """The socket fills while the client does not read: the rest of the ciphertext goes
    through uv_write, the queue waits as shared frames, and everything arrives in order."""
    node, _ = tls_node(harness)
    raw = _raw_tls_member(node, "slow", "flood")
    try:
        async def body():
            c = await _flood(node, "flood", 60, 12_000)  # ~720 KB: under --send-queue-bytes
            await asyncio.sleep(0.5)
            got = []
            while len(got) < 60:
                f = await asyncio.to_thread(raw.recv_json)
                if f["type"] == "message":
                    got.append(f["message"]["i"])
            assert got == list(range(60))
            await c.assert_open()
            await close_all(c)
        run(body())
    finally:
        raw.close()


def test_tls_slow_consumer_closed(harness):
    """A TLS reader that never reads is closed at --send-queue-bytes like a TCP one; the
    ciphertext it holds is bounded by one batch, the rest waits as shared frames."""
    node, _ = tls_node(harness, args=["--send-queue-bytes", "131072", "--rate-limit", "0"])
    raw = _raw_tls_member(node, "stuck", "flood")
    try:
        async def body():
            c = await Client.connect(node, "sender")
            await c.join("flood")
            for i in range(400):  # up to 24 MB towards a reader that never reads
                await c.say("flood", {"i": i, "pad": "p" * 60000})
                if metrics(node).get("natter_slow_consumer_closes_total", 0) >= 1:
                    break
            await nh.async_wait_until(
                lambda: metrics(node)["natter_slow_consumer_closes_total"] >= 1, t(10),
                what="the slow consumer closed")
            await c.assert_open()
            await close_all(c)
        run(body())
    finally:
        raw.close()

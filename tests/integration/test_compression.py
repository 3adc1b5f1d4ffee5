"""permessage-deflate (RFC 7692) at the node (docs/tls-compression.md): negotiation, one
compressed frame per message per node shared by every member that negotiated it (the
natter_deflate_* counters prove it), plain frames for members without it, the threshold,
inflating client messages with a hard cap (zip bomb -> 1009), and the protocol errors
around RSV1."""

import json
import os
import struct
import zlib

from natter_harness import Client, RawWS, close_all, run, t
import natter_harness as nh

BIG = {"text": "compress me " * 200, "n": list(range(50))}  # ~2.6 KB of JSON, compressible


metrics = nh.node_metrics


def inflate(payload):
    d = zlib.decompressobj(-15)
    return d.decompress(payload + b"\x00\x00\xff\xff") + d.flush()


def deflate(data, final=False):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    return out if final else out[:-4]  # a sync flush ends with 00 00 ff ff: removed


def raw_frame(raw, timeout=None):
    """(rsv1, opcode, payload) of the next server frame of a RawWS."""
    deadline_s = raw.timeout if timeout is None else timeout
    import time
    deadline = time.monotonic() + deadline_s
    b0, b1 = raw._read(2, deadline)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", raw._read(2, deadline))[0]
    elif n == 127:
        n = struct.unpack("!Q", raw._read(8, deadline))[0]
    assert not b1 & 0x80, "server frames are never masked"
    return bool(b0 & 0x40), b0 & 0x0F, raw._read(n, deadline)


def raw_json_until(raw, pred, limit=50):
    """Reads frames (inflating RSV1 ones) until a JSON frame matches pred; returns
    (compressed, frame)."""
    for _ in range(limit):
        rsv1, op, payload = raw_frame(raw)
        if op != 1:
            continue
        data = inflate(payload) if rsv1 else payload
        f = json.loads(data)
        if pred(f):
            return rsv1, f
    raise AssertionError("no matching frame")


def raw_client(node, user, extensions=None):
    hdrs = {"Sec-WebSocket-Extensions": extensions} if extensions else None
    raw = RawWS(node.port, "/ws?token=" + node.token(user), headers=hdrs)
    raw_json_until(raw, lambda f: f["type"] == "welcome")
    return raw


def raw_join(raw, room):
    raw.send_text(json.dumps({"action": "joinRoom", "roomId": room, "requestId": "j"}))
    raw_json_until(raw, lambda f: f["type"] == "joined")


# ---------------------------------------------------------------------------------------


def test_one_compressed_frame_for_many_members(harness):
    node = harness.node("z")
    n_deflate = 6

    async def body():
        zs = [await Client.connect(node, f"z{i}", name=f"z{i}", compression="deflate")
              for i in range(n_deflate)]
        plain = await Client.connect(node, "plain", name="plain")
        try:
            for c in zs:
                ext = c.ws.response_headers.get("Sec-WebSocket-Extensions", "")
                assert ext.startswith("permessage-deflate"), ext
                assert "server_no_context_takeover" in ext
                assert "client_no_context_takeover" in ext
            assert "Sec-WebSocket-Extensions" not in plain.ws.response_headers
            for c in zs + [plain]:
                await c.join("big")
            before = metrics(node)
            # the sender's message goes to the node compressed (websockets compresses)
            await zs[0].say("big", BIG)
            for c in zs + [plain]:
                m = await c.expect("message", roomId="big")
                assert m["message"] == BIG
            after = metrics(node)
            d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            # one compressed frame for the message, queued on every deflate member; the
            # plain member got the plain frame (deliveries counts all 7)
            assert d["natter_deflate_frames_total"] == 1, d
            assert d["natter_deflate_deliveries_total"] == n_deflate, d
            assert d["natter_deliveries_total"] == n_deflate + 1, d
            assert d["natter_inflate_messages_total"] >= 1, d
            assert after["natter_deflate_out_bytes_total"] < after["natter_deflate_in_bytes_total"]
            # below --compression-min-bytes: nothing compressed
            before = metrics(node)
            await zs[1].say("big", "short")
            for c in zs + [plain]:
                await c.expect("message", roomId="big", message="short")
            after = metrics(node)
            assert after["natter_deflate_frames_total"] == before["natter_deflate_frames_total"]
        finally:
            await close_all(*zs, plain)

    run(body())


def test_raw_frames_rsv1_and_plain_side_by_side(harness):
    node = harness.node("z")
    zc = raw_client(node, "zc", "permessage-deflate; client_max_window_bits")
    small = raw_client(node, "small", "permessage-deflate; server_max_window_bits=10")
    pc = raw_client(node, "pc")
    try:
        assert zc.headers["sec-websocket-extensions"] == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        assert small.headers["sec-websocket-extensions"].endswith("server_max_window_bits=10")
        assert "sec-websocket-extensions" not in pc.headers
        for r in (zc, small, pc):
            raw_join(r, "mix")

        async def send():
            c = await Client.connect(node, "sender")
            await c.join("mix")
            await c.say("mix", BIG)
            await c.say("mix", {"mid": "y" * 600})  # over the threshold, under 2^10
            await close_all(c)
        run(send())
        is_big = lambda f: f["type"] == "message" and f["message"] == BIG  # noqa: E731
        is_mid = lambda f: f["type"] == "message" and "mid" in f["message"]  # noqa: E731
        assert raw_json_until(zc, is_big)[0] is True
        assert raw_json_until(pc, is_big)[0] is False
        # a 1024-byte window cannot take the 2.6 KB message compressed with ours: plain
        assert raw_json_until(small, is_big)[0] is False
        assert raw_json_until(small, is_mid)[0] is True
        assert raw_json_until(zc, is_mid)[0] is True
    finally:
        for r in (zc, small, pc):
            r.close()


def test_offers_declined_and_compression_off(harness):
    node = harness.node("z")
    for offer in ("permessage-deflate; server_max_window_bits=7",
                  "permessage-deflate; bogus",
                  "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                  "x-webkit-deflate-frame"):
        r = raw_client(node, "u", offer)
        assert "sec-websocket-extensions" not in r.headers, (offer, r.headers)
        r.close()
    # the first acceptable offer wins
    r = raw_client(node, "u", "permessage-deflate; bogus, permessage-deflate; "
                              "server_max_window_bits=12")
    assert r.headers["sec-websocket-extensions"].endswith("server_max_window_bits=12")
    r.close()
    off = harness.node("off", args=["--compression", "off"])
    r = raw_client(off, "u", "permessage-deflate")
    assert "sec-websocket-extensions" not in r.headers
    # RSV1 without the extension is a protocol error
    r.send_frame(1, b'{"action":"heartbeat"}', rsv=4)
    assert r.wait_close()[0] == 1002
    r.close()


def test_zip_bomb_closes_1009_others_unaffected(harness):
    node = harness.node("z", args=["--max-message-bytes", "65536"])

    async def body():
        watcher = await Client.connect(node, "watcher", compression="deflate")
        await watcher.join("r")
        try:
            bomb = deflate(b'{"action":"heartbeat","pad":"' + b" " * 20_000_000 + b'"}')
            assert len(bomb) < 65536  # passes the wire limit: only the inflated size is over
            raw = raw_client(node, "bomber", "permessage-deflate")
            raw.send_frame(1, bomb, rsv=4)
            code, _, _ = raw.wait_close(timeout=t(10))
            assert code == 1009
            raw.close()
            assert metrics(node)["natter_inflate_refused_total"] >= 1
            # just under the limit is fine, and fragmented compressed messages too
            raw = raw_client(node, "ok", "permessage-deflate")
            raw_join(raw, "r")
            msg = json.dumps({"action": "sendMessage", "roomId": "r",
                              "message": "p" * 60_000}).encode()
            z = deflate(msg)
            raw.send_frame(1, z[:100], fin=False, rsv=4)
            raw.send_frame(0, z[100:])
            f = raw_json_until(raw, lambda f: f["type"] in ("ack", "error"))[1]
            assert f["type"] == "ack", f
            await watcher.expect("message", roomId="r", pred=lambda m: len(m["message"]) == 60_000)
            # a final block (BFINAL) is fine as well
            raw.send_frame(1, deflate(b'{"action":"heartbeat","requestId":"h"}', final=True),
                           rsv=4)
            assert raw_json_until(raw, lambda f: f.get("requestId") == "h")[1]["type"] == \
                "heartbeat"
            raw.close()
            await watcher.assert_open()
        finally:
            await close_all(watcher)

    run(body())


def test_bad_compressed_input(harness):
    node = harness.node("z")
    cases = [
        # not DEFLATE at all
        (lambda r: r.send_frame(1, b"\xff\xff\xff\xff garbage", rsv=4), 1007),
        # inflates to invalid UTF-8 in a text message
        (lambda r: r.send_frame(1, deflate(b'{"a":"\xc3\x28"}'), rsv=4), 1007),
        # RSV1 on a control frame, and on a continuation frame
        (lambda r: r.send_frame(9, b"ping", rsv=4), 1002),
        (lambda r: (r.send_frame(1, deflate(b'{"a":'), fin=False, rsv=4),
                    r.send_frame(0, b"x", rsv=4)), 1002),
    ]
    for send, want in cases:
        r = raw_client(node, "bad", "permessage-deflate")
        send(r)
        code, _, _ = r.wait_close()
        assert code == want, (want, code)
        r.close()

    async def body():
        c = await Client.connect(node, "fine", compression="deflate")
        await c.assert_open()
        await close_all(c)

    run(body())


def test_compression_over_tls(harness):
    cert = nh.make_cert(os.path.join(harness.dir, "certs"), "z")
    node = harness.node("zt", tls=cert)

    async def body():
        a = await Client.connect(node, "a", compression="deflate")
        b = await Client.connect(node, "b", compression="deflate")
        try:
            await a.join("r")
            await b.join("r")
            await a.say("r", BIG)
            assert (await b.expect("message", roomId="r"))["message"] == BIG
        finally:
            await close_all(a, b)

    run(body())
    assert metrics(node)["natter_deflate_frames_total"] >= 1

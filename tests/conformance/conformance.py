#!/usr/bin/env python3
"""RFC 6455 conformance suite for natter-node, modelled on Autobahn|Testsuite's case groups
1-7 and 12 (Autobahn itself needs Python 2). Raw sockets, no WebSocket library: every frame
is built by hand so the suite can send what a library refuses to (bad lengths, reserved
bits and opcodes, partial frames, invalid UTF-8, invalid close codes).

A natter node echoes nothing by itself, so each case observes the node through the
protocol (docs/client.md):
  * a text message is "processed" when the node answers it: a `heartbeat` reply to
    {"action":"heartbeat","requestId":...} (the requestId is echoed exactly, which also
    proves the text arrived intact), or an `error` reply for text that is not a request
    (empty, not JSON) — either way a reply and no close;
  * a binary message is answered with `error` bad_request (binary frames are not part of
    protocol v1) — a reply, not a close;
  * "nothing happened" (unsolicited pong, frames after a close) is shown by sending a
    heartbeat afterwards and getting its reply as the very next frame;
  * protocol violations must end with the node's close frame carrying the RFC's code
    (1002, 1007, 1009), then the TCP connection closed by the node.

Usage: conformance.py --bin PATH/natter-node      (starts its own node on free ports)
       conformance.py --port P --secret S         (against a running node)
       options: --cases 5,6.4 (prefixes) --verbose
Prints one row per case and a summary; exits 1 when a case failed.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib

HOST = "127.0.0.1"
SECRET = "conformance-secret-0123456789abcdef0123456789"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SCALE = float(os.environ.get("NATTER_TEST_TIMEOUT_SCALE", "1"))
TIMEOUT = 5.0 * SCALE
MAX_MSG = 1 << 20   # --max-message-bytes of the node the suite starts

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class CaseFailed(Exception):
    pass


class NotApplicable(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CaseFailed(msg)


# ------------------------------------------------------------------------------ tokens

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(user, tenant="conf", secret=SECRET):
    h = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64url(json.dumps({"sub": user, "tenant": tenant,
                           "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


# ------------------------------------------------------------------------------ client

def frame(op, payload=b"", fin=True, rsv=0, mask=True, length=None):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    if payload:
        k = (key * (len(payload) // 4 + 1))[:len(payload)]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(
            len(payload), "big")
    return head + key + payload


class Conn:
    """One client connection: upgrade, `welcome`, then raw frames both ways."""
    _rid = 0

    def __init__(self, port, extensions=None):
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /ws?token={token('conf-user')} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n")
        if extensions:
            req += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CaseFailed(f"connection closed during the handshake: {buf!r}")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        check(lines[0].startswith("HTTP/1.1 101"), f"upgrade refused: {lines[0]}")
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in lines[1:])}
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        check(self.headers.get("sec-websocket-accept") == want, "bad Sec-WebSocket-Accept")
        self.inflater = None
        self.peer_gone = False
        ext = self.headers.get("sec-websocket-extensions", "")
        self.deflate = "permessage-deflate" in ext
        self.server_no_ctx = "server_no_context_takeover" in ext
        welcome = self.recv_json()
        check(welcome.get("type") == "welcome", f"first frame is not welcome: {welcome}")

    # ---- sending ----
    def send(self, data):
        """Sends, tolerating a node that already failed the connection: a case may keep
        sending after the offending byte, and the node may close before it is done
        (fail fast); the close frame is then read by expect_close."""
        if self.peer_gone:
            return
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.peer_gone = True

    def send_frame(self, op, payload=b"", **kw):
        self.send(frame(op, payload, **kw))

    def send_chunked(self, data, chunk, delay=0.0):
        for i in range(0, len(data), chunk):
            self.send(data[i:i + chunk])
            if delay:
                time.sleep(delay)

    @classmethod
    def rid(cls):
        cls._rid += 1
        return f"c{cls._rid}"

    # ---- receiving ----
    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout=None):
        """(fin, rsv, opcode, payload) of the next server frame; checks server framing."""
        deadline = time.monotonic() + (TIMEOUT if timeout is None else timeout)
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
            check(n >= 126, "server used a non-minimal 16-bit length")
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
            check(n >= 65536, "server used a non-minimal 64-bit length")
        check(not b1 & 0x80, "server sent a masked frame (RFC 6455 5.1)")
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._read(n, deadline)

    def recv_msg(self, timeout=None):
        """Next data message or control frame as (opcode, payload), reassembling
        fragments and inflating compressed messages."""
        fin, rsv, op, payload = self.recv_frame(timeout)
        if op >= 8:
            check(fin and len(payload) <= 125, "server control frame fragmented or too long")
            return op, payload
        check(op in (OP_TEXT, OP_BIN), f"server sent opcode {op} outside a message")
        compressed = bool(rsv & 4)
        check(rsv & 3 == 0 and (not compressed or self.deflate),
              f"server set reserved bits {rsv:03b} without an extension")
        parts = [payload]
        while not fin:
            fin, rsv2, op2, p2 = self.recv_frame(timeout)
            if op2 >= 8:
                continue  # a control frame inside a fragmented message
            check(op2 == OP_CONT and rsv2 == 0, "bad server continuation frame")
            parts.append(p2)
        data = b"".join(parts)
        if compressed:
            if self.inflater is None or self.server_no_ctx:
                self.inflater = zlib.decompressobj(-15)
            data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
        if op == OP_TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise CaseFailed("server sent invalid UTF-8 in a text message") from None
        return op, data

    def recv_json(self, timeout=None):
        op, data = self.recv_msg(timeout)
        check(op == OP_TEXT, f"expected a text message, got opcode {op} {data[:80]!r}")
        return json.loads(data)

    def expect_reply(self, rid=None, types=("heartbeat", "error"), timeout=None):
        """The next data frame must be a reply (skipping nothing)."""
        op, data = self.recv_msg(timeout)
        if op == OP_CLOSE:
            raise CaseFailed(f"closed ({close_info(data)}) where a reply was expected")
        check(op == OP_TEXT, f"expected a text reply, got opcode {op}")
        f = json.loads(data)
        check(f.get("type") in types, f"unexpected reply {f}")
        if rid is not None:
            check(f.get("requestId") == rid, f"reply to {f.get('requestId')!r}, want {rid!r}")
        return f

    def expect_pong(self, payload, timeout=None):
        op, data = self.recv_msg(timeout)
        check(op == OP_PONG, f"expected a pong, got opcode {op} {data[:60]!r}")
        check(data == payload, f"pong payload {data[:60]!r} != ping payload {payload[:60]!r}")

    def expect_alive(self):
        """Nothing else is pending: a heartbeat's reply is the very next frame."""
        rid = self.rid()
        self.send_frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": rid}))
        self.expect_reply(rid, ("heartbeat",))

    def expect_close(self, codes, timeout=None, allow_before=()):
        """Reads up to the node's close frame: its code must be in `codes` (None = no
        status); data frames before it fail the case unless their opcode is in
        `allow_before`. Answers the close and checks that the node then closes TCP."""
        deadline = time.monotonic() + (TIMEOUT if timeout is None else timeout)
        while True:
            try:
                op, data = self.recv_msg(max(0.01, deadline - time.monotonic()))
            except socket.timeout:
                raise CaseFailed(f"no close frame within {TIMEOUT:.0f}s (want {codes})") from None
            except (EOFError, ConnectionResetError):
                raise CaseFailed(f"TCP closed without a close frame (want {codes})") from None
            if op == OP_CLOSE:
                break
            check(op in allow_before, f"unexpected frame before the close: opcode {op} "
                                      f"{data[:80]!r}")
        code, reason = close_info(data)
        check(code in codes, f"close code {code} {reason!r}, want {codes}")
        try:
            self.send_frame(OP_CLOSE, data[:2])
        except OSError:
            pass
        self.expect_eof()
        return code, reason

    def expect_eof(self, timeout=None):
        deadline = time.monotonic() + (TIMEOUT if timeout is None else timeout)
        try:
            while True:
                self._read(len(self.buf) + 1, deadline)
        except (EOFError, ConnectionResetError):
            return
        except socket.timeout:
            raise CaseFailed("the node did not close the TCP connection after the close "
                             "handshake") from None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def close_info(payload):
    if len(payload) >= 2:
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")
    return None, ""


def heartbeat_of_size(n, rid):
    """A heartbeat request of exactly n bytes (n >= 64), padded with a `pad` field."""
    base = json.dumps({"action": "heartbeat", "requestId": rid, "pad": ""})
    check(n >= len(base), "size too small for a heartbeat")
    return (base[:-2] + "x" * (n - len(base)) + '"}').encode()


def text_of_size(n, rid):
    """Text of n bytes the node answers: a padded heartbeat, or (too small for one)
    spaces, which are not JSON: `error` bad_request."""
    return heartbeat_of_size(n, rid) if n >= 64 else b" " * n


# ------------------------------------------------------------------------------ cases

CASES = []


def case(cid, desc):
    def deco(fn):
        CASES.append((cid, desc, fn))
        return fn
    return deco


def gen_case(cid, desc, fn):
    CASES.append((cid, desc, fn))


# ---- 1 framing ----

SIZES = [(1, 0), (2, 125), (3, 126), (4, 127), (5, 128), (6, 65535), (7, 65536)]


def _lenbits(n):
    return "7-bit" if n < 126 else "16-bit" if n < 65536 else "64-bit"


for i, n in SIZES:
    def t(c, n=n):
        rid = c.rid()
        c.send_frame(OP_TEXT, text_of_size(n, rid))
        f = c.expect_reply()
        if n >= 64:
            check(f.get("type") == "heartbeat" and f.get("requestId") == rid, f"reply {f}")
    gen_case(f"1.1.{i}", f"text, {n} bytes ({_lenbits(n)} length)", t)


def _t_1_1_8(c):
    rid = c.rid()
    c.send_chunked(frame(OP_TEXT, heartbeat_of_size(65536, rid)), 997)
    c.expect_reply(rid, ("heartbeat",))


gen_case("1.1.8", "text, 65536 bytes sent in chunks of 997", _t_1_1_8)


def _t_1_1_9(c):
    rid = c.rid()
    c.send_frame(OP_TEXT, heartbeat_of_size(256 * 1024, rid))
    c.expect_reply(rid, ("heartbeat",))


gen_case("1.1.9", "text, 256 KiB (64-bit length)", _t_1_1_9)

for i, n in SIZES:
    def t(c, n=n):
        c.send_frame(OP_BIN, os.urandom(n))
        f = c.expect_reply(types=("error",))
        check(f.get("code") == "bad_request", f"binary frame: {f}")
    gen_case(f"1.2.{i}", f"binary, {n} bytes ({_lenbits(n)} length) -> error reply", t)


def _t_1_2_8(c):
    c.send_chunked(frame(OP_BIN, os.urandom(65536)), 997)
    c.expect_reply(types=("error",))


gen_case("1.2.8", "binary, 65536 bytes sent in chunks of 997", _t_1_2_8)


def _t_1_3_1(c):
    # The header of an oversized frame and a few payload bytes: the node must refuse it
    # from the announced length, without waiting for (or buffering) the payload.
    c.send(frame(OP_TEXT, b"", length=MAX_MSG + 1) + b" " * 16)
    c.expect_close({1009})


gen_case("1.3.1", "frame announcing max-message-bytes + 1 -> 1009 before the payload", _t_1_3_1)


def _t_1_3_2(c):
    half = MAX_MSG // 2 + 8
    c.send_frame(OP_TEXT, b" " * half, fin=False)
    c.send_frame(OP_CONT, b" " * half, fin=True)
    c.expect_close({1009})


gen_case("1.3.2", "fragments adding up past max-message-bytes -> 1009", _t_1_3_2)


def _t_1_3_3(c):
    c.send(frame(OP_TEXT, b"", length=1 << 62) + b" " * 16)
    c.expect_close({1009, 1002})


gen_case("1.3.3", "frame announcing a 2^62-byte payload -> 1009", _t_1_3_3)


def _t_1_3_4(c):
    c.send(struct.pack("!BBQ", 0x81, 0xFF, 1 << 63) + os.urandom(4))
    c.expect_close({1002, 1009})


gen_case("1.3.4", "64-bit length with the most significant bit set -> 1002", _t_1_3_4)


def _t_1_3_5(c):
    c.send(struct.pack("!BBH", 0x81, 0xFE, 5) + os.urandom(4) + b"hello")
    c.expect_close({1002})


gen_case("1.3.5", "non-minimal 16-bit length encoding -> 1002", _t_1_3_5)


def _t_1_3_6(c):
    c.send_frame(OP_TEXT, json.dumps({"action": "heartbeat"}), mask=False)
    c.expect_close({1002})


gen_case("1.3.6", "unmasked client frame -> 1002, not processed", _t_1_3_6)

# ---- 2 ping/pong ----


def _ping_case(payload, chunk=None):
    def t(c):
        data = frame(OP_PING, payload)
        if chunk:
            c.send_chunked(data, chunk)
        else:
            c.send(data)
        c.expect_pong(payload)
        c.expect_alive()
    return t


gen_case("2.1", "ping without payload -> pong", _ping_case(b""))
gen_case("2.2", "ping with a text payload -> pong with the same payload",
         _ping_case(b"Hello, world!"))
gen_case("2.3", "ping with a binary payload -> same payload",
         _ping_case(bytes([0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF])))
gen_case("2.4", "ping with a 125-byte payload -> pong", _ping_case(os.urandom(125)))


def _t_2_5(c):
    c.send_frame(OP_PING, b"\xfe" * 126)
    c.expect_close({1002})


gen_case("2.5", "ping with a 126-byte payload -> 1002", _t_2_5)
gen_case("2.6", "ping with 125 bytes sent one byte at a time -> pong",
         _ping_case(os.urandom(125), chunk=1))


def _t_2_7(c):
    c.send_frame(OP_PONG, b"")
    c.expect_alive()


gen_case("2.7", "unsolicited pong without payload -> ignored", _t_2_7)


def _t_2_8(c):
    c.send_frame(OP_PONG, b"unsolicited pong payload")
    c.expect_alive()


gen_case("2.8", "unsolicited pong with payload -> ignored", _t_2_8)


def _t_2_9(c):
    c.send_frame(OP_PONG, b"unsolicited pong payload")
    c.send_frame(OP_PING, b"ping payload")
    c.expect_pong(b"ping payload")
    c.expect_alive()


gen_case("2.9", "unsolicited pong then ping -> only the ping's pong", _t_2_9)


def _pings(chunk):
    def t(c):
        data = b"".join(frame(OP_PING, f"payload-{i}".encode()) for i in range(10))
        if chunk:
            c.send_chunked(data, chunk)
        else:
            c.send(data)
        for i in range(10):
            c.expect_pong(f"payload-{i}".encode())
        c.expect_alive()
    return t


gen_case("2.10", "10 pings -> 10 pongs in order", _pings(None))
gen_case("2.11", "10 pings sent one byte at a time -> 10 pongs in order", _pings(1))

# ---- 3 reserved bits ----


def _rsv(rsv, op=OP_TEXT, payload=None, before=False, after_ping=False, chunk=None):
    def t(c):
        data = b""
        rid = c.rid()
        if before:
            data += frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": rid}))
        pl = payload if payload is not None else json.dumps({"action": "heartbeat"}).encode()
        data += frame(op, pl, rsv=rsv)
        if after_ping:
            data += frame(OP_PING, b"must not be answered")
        if chunk:
            c.send_chunked(data, chunk)
        else:
            c.send(data)
        if before:
            c.expect_reply(rid, ("heartbeat",))
        c.expect_close({1002})
    return t


gen_case("3.1", "text with RSV1 (no extension negotiated) -> 1002", _rsv(1))
gen_case("3.2", "text, then text with RSV2, then ping -> reply, 1002, no pong",
         _rsv(2, before=True, after_ping=True))
gen_case("3.3", "same with RSV3, all sent at once", _rsv(3, before=True, after_ping=True))
gen_case("3.4", "same with RSV1+RSV2+RSV3, one byte at a time",
         _rsv(7, before=True, after_ping=True, chunk=1))
gen_case("3.5", "binary with RSV1|RSV3 -> 1002", _rsv(5, op=OP_BIN, payload=os.urandom(8)))
gen_case("3.6", "ping with RSV2|RSV3 -> 1002", _rsv(6, op=OP_PING, payload=b"ping"))
gen_case("3.7", "close with RSV1|RSV2|RSV3 -> 1002", _rsv(7, op=OP_CLOSE, payload=b"\x03\xe8"))

# ---- 4 opcodes ----

for i, op in enumerate([3, 4, 5, 6, 7], 1):
    def t(c, op=op, i=i):
        rid = c.rid()
        c.send_frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": rid}))
        c.send_frame(op, b"reserved opcode payload" if i > 2 else b"")
        c.send_frame(OP_PING, b"must not be answered")
        c.expect_reply(rid, ("heartbeat",))
        c.expect_close({1002})
    gen_case(f"4.1.{i}", f"reserved non-control opcode {op} -> 1002", t)

for i, op in enumerate([0xB, 0xC, 0xD, 0xE, 0xF], 1):
    def t(c, op=op, i=i):
        rid = c.rid()
        c.send_frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": rid}))
        c.send_frame(op, b"reserved opcode payload" if i > 2 else b"")
        c.send_frame(OP_PING, b"must not be answered")
        c.expect_reply(rid, ("heartbeat",))
        c.expect_close({1002})
    gen_case(f"4.2.{i}", f"reserved control opcode {op:#x} -> 1002", t)

# ---- 5 fragmentation ----


def _t_5_1(c):
    c.send_frame(OP_PING, b"frag", fin=False)
    c.send_frame(OP_CONT, b"mented", fin=True)
    c.expect_close({1002})


gen_case("5.1", "ping in two fragments -> 1002", _t_5_1)


def _t_5_2(c):
    c.send_frame(OP_PONG, b"frag", fin=False)
    c.send_frame(OP_CONT, b"mented", fin=True)
    c.expect_close({1002})


gen_case("5.2", "pong in two fragments -> 1002", _t_5_2)


def _fragmented(nfrag=2, chunk=None, pings=0, pong=False, delay=0.0):
    def t(c):
        rid = c.rid()
        msg = json.dumps({"action": "heartbeat", "requestId": rid}).encode()
        k = max(1, len(msg) // nfrag)
        pieces = [msg[i * k:(i + 1) * k] for i in range(nfrag - 1)] + [msg[(nfrag - 1) * k:]]
        out = []
        for i, p in enumerate(pieces):
            out.append(frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == nfrag - 1))
            if i < nfrag - 1:
                for j in range(pings):
                    out.append(frame(OP_PING, f"ping-{i}-{j}".encode()))
                if pong:
                    out.append(frame(OP_PONG, b"unsolicited"))
        for piece in out:
            if chunk:
                c.send_chunked(piece, chunk)
            else:
                c.send(piece)
            if delay:
                time.sleep(delay)
        for i in range(nfrag - 1):
            for j in range(pings):
                c.expect_pong(f"ping-{i}-{j}".encode())
        c.expect_reply(rid, ("heartbeat",))
    return t


gen_case("5.3", "text in 2 fragments -> processed", _fragmented())
gen_case("5.4", "text in 2 fragments, sent in chunks of 7", _fragmented(chunk=7))
gen_case("5.5", "text in 2 fragments, one byte at a time", _fragmented(chunk=1))
gen_case("5.6", "text in 2 fragments with a ping between -> pong, then processed",
         _fragmented(pings=1))
gen_case("5.7", "same, chunks of 3", _fragmented(pings=1, chunk=3))
gen_case("5.8", "same, one byte at a time", _fragmented(pings=1, chunk=1))
gen_case("5.9", "text in 6 fragments with 2 pings between each, with delays",
         _fragmented(nfrag=6, pings=2, delay=0.02))
gen_case("5.10", "text in 4 fragments with unsolicited pongs between -> processed",
         _fragmented(nfrag=4, pong=True))
gen_case("5.11", "text in 30 one-or-two-byte fragments -> processed", _fragmented(nfrag=30))


def _bad_cont(frames_):
    def t(c):
        for f in frames_:
            c.send(f)
        c.expect_close({1002})
    return t


gen_case("5.12", "continuation (FIN) without a start -> 1002",
         _bad_cont([frame(OP_CONT, b"fragment", fin=True)]))
gen_case("5.13", "continuation (no FIN) without a start -> 1002",
         _bad_cont([frame(OP_CONT, b"fragment", fin=False)]))
gen_case("5.14", "continuation without a start, then a text message -> 1002",
         _bad_cont([frame(OP_CONT, b"fragment", fin=True),
                    frame(OP_TEXT, json.dumps({"action": "heartbeat"}))]))
gen_case("5.15", "text started, then a new text frame instead of a continuation -> 1002",
         _bad_cont([frame(OP_TEXT, b'{"action":', fin=False),
                    frame(OP_TEXT, b'"heartbeat"}', fin=True)]))
gen_case("5.16", "text started, then a binary frame -> 1002",
         _bad_cont([frame(OP_TEXT, b'{"action":', fin=False), frame(OP_BIN, b"x", fin=True)]))
def _t_5_17(c):
    rid = c.rid()
    c.send_frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": rid}))
    c.send_frame(OP_CONT, b"stray", fin=True)
    c.expect_reply(rid, ("heartbeat",))
    c.expect_close({1002})


gen_case("5.17", "text finished, then a stray continuation -> reply, then 1002", _t_5_17)


def _t_5_18(c):
    c.send_frame(OP_TEXT, b'{"action":"heart', fin=False)
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.expect_close({1000})


gen_case("5.18", "close in the middle of a fragmented message -> close echoed", _t_5_18)

# ---- 6 UTF-8 ----

VALID = [
    ("6.2.1", "Hello-µ@ßöäüàá-UTF-8!!"),
    ("6.2.2", "κόσμε"),
    ("6.2.3", "\u0080\u07ff\u0800\uffff"),           # 2- and 3-byte boundaries
    ("6.2.4", "\U00010000\U0010ffff"),               # 4-byte boundaries
    ("6.2.5", "\ud7ff\ue000\ufffd"),                 # around the surrogates
    ("6.2.6", "\ufdd0\ufffe\U0001fffe\U0010fffe"),   # noncharacters are valid UTF-8
    ("6.2.7", "𝄞 ♫ 😀 汉字 ﷺ"),
]
for cid, s in VALID:
    def t(c, s=s):
        rid = "u-" + s
        c.send_frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": rid},
                                         ensure_ascii=False))
        c.expect_reply(rid, ("heartbeat",))
    gen_case(cid, f"valid UTF-8 {s.encode('unicode_escape').decode()[:40]} -> echoed exactly", t)


def _valid_split(step):
    def t(c):
        rid = "split-" + "".join(v for _, v in VALID[:4])
        msg = json.dumps({"action": "heartbeat", "requestId": rid}, ensure_ascii=False).encode()
        pieces = [msg[i:i + step] for i in range(0, len(msg), step)]
        for i, p in enumerate(pieces):
            c.send_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1)
        c.expect_reply(rid, ("heartbeat",))
    return t


gen_case("6.3.1", "valid UTF-8 split into 1-byte fragments (inside characters)", _valid_split(1))
gen_case("6.3.2", "valid UTF-8 split into 3-byte fragments", _valid_split(3))
gen_case("6.3.3", "valid UTF-8 split into 5-byte fragments", _valid_split(5))


def _t_6_3_4(c):
    c.send_frame(OP_TEXT, b"", fin=False)
    c.send_frame(OP_CONT, b"", fin=False)
    c.send_frame(OP_CONT, b"", fin=True)
    c.expect_reply(types=("error",))


gen_case("6.3.4", "empty text message in 3 empty fragments -> processed (error reply)",
         _t_6_3_4)


def _t_6_3_5(c):
    c.send_frame(OP_TEXT, b"\x00 NUL is valid UTF-8")
    c.expect_reply(types=("error",))


gen_case("6.3.5", "U+0000 in text (valid UTF-8, not JSON) -> error reply, no close", _t_6_3_5)

INVALID = [
    ("lone continuation byte 0x80", b"\x80"),
    ("lone continuation byte 0xbf", b"\xbf"),
    ("all 64 continuation bytes", bytes(range(0x80, 0xC0))),
    ("start byte followed by space", b"\xc0 "),
    ("overlong / (2 bytes)", b"\xc0\xaf"),
    ("overlong / (3 bytes)", b"\xe0\x80\xaf"),
    ("overlong / (4 bytes)", b"\xf0\x80\x80\xaf"),
    ("overlong / (5 bytes)", b"\xf8\x80\x80\x80\xaf"),
    ("overlong / (6 bytes)", b"\xfc\x80\x80\x80\x80\xaf"),
    ("maximum overlong (2 bytes)", b"\xc1\xbf"),
    ("maximum overlong (3 bytes)", b"\xe0\x9f\xbf"),
    ("maximum overlong (4 bytes)", b"\xf0\x8f\xbf\xbf"),
    ("surrogate U+D800", b"\xed\xa0\x80"),
    ("surrogate U+DBFF", b"\xed\xaf\xbf"),
    ("surrogate U+DC00", b"\xed\xb0\x80"),
    ("surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("surrogate pair U+D800 U+DC00", b"\xed\xa0\x80\xed\xb0\x80"),
    ("above U+10FFFF", b"\xf4\x90\x80\x80"),
    ("start byte 0xf5", b"\xf5\x80\x80\x80"),
    ("byte 0xfe", b"\xfe"),
    ("byte 0xff", b"\xff"),
    ("0xfe 0xfe 0xff 0xff", b"\xfe\xfe\xff\xff"),
    ("truncated 2-byte sequence at the end", b"abc\xc2"),
    ("truncated 3-byte sequence at the end", b"abc\xe0\xa0"),
    ("truncated 4-byte sequence at the end", b"abc\xf0\x90\x80"),
    ("κόσμε followed by a surrogate", "κόσμε".encode() + b"\xed\xa0\x80edited"),
    ("invalid byte inside a JSON request", b'{"action":"heartbeat","x":"\xff"}'),
]
for i, (desc, data) in enumerate(INVALID, 1):
    def t(c, data=data):
        c.send_frame(OP_TEXT, data)
        c.expect_close({1007})
    gen_case(f"6.5.{i}", f"invalid UTF-8: {desc} -> 1007", t)

    def t2(c, data=data):
        for j, b in enumerate(data):
            c.send_frame(OP_TEXT if j == 0 else OP_CONT, bytes([b]), fin=j == len(data) - 1)
        c.expect_close({1007})
    gen_case(f"6.6.{i}", f"invalid UTF-8 one byte per fragment: {desc} -> 1007", t2)

# Fail fast (Autobahn 6.4): the close must come as soon as the invalid bytes arrive,
# before the message ends; the rest is sent only after the close was received.
GOOD = "κόσμε".encode()


def _t_6_4_1(c):
    c.send_frame(OP_TEXT, GOOD, fin=False)
    time.sleep(0.1)
    c.send_frame(OP_CONT, b"\xf4\x90\x80\x80", fin=False)
    c.expect_close({1007})
    try:
        c.send_frame(OP_CONT, b"edited", fin=True)
    except OSError:
        pass


gen_case("6.4.1", "fail fast: invalid fragment in an unfinished message -> 1007 at once",
         _t_6_4_1)


def _t_6_4_2(c):
    c.send_frame(OP_TEXT, GOOD + b"\xf4", fin=False)
    time.sleep(0.1)
    c.send_frame(OP_CONT, b"\x90", fin=False)
    c.expect_close({1007})


gen_case("6.4.2", "fail fast: a sequence made invalid by the next fragment -> 1007 at once",
         _t_6_4_2)


def _t_6_4_3(c):
    payload = GOOD + b"\xf4\x90\x80\x80" + b"edited" * 100
    data = frame(OP_TEXT, payload)
    cut = len(data) - len(payload) + len(GOOD)
    c.send(data[:cut])
    time.sleep(0.1)
    c.send(data[cut:cut + 4])  # the invalid bytes; the frame stays unfinished
    c.expect_close({1007})


gen_case("6.4.3", "fail fast: invalid bytes inside one unfinished frame -> 1007 at once",
         _t_6_4_3)


def _t_6_4_4(c):
    payload = GOOD + b"\xf4\x90\x80\x80" + b"edited" * 100
    data = frame(OP_TEXT, payload)
    cut = len(data) - len(payload) + len(GOOD)
    c.send(data[:cut + 1])      # ... \xf4: still a valid prefix
    time.sleep(0.1)
    c.send(data[cut + 1:cut + 2])  # \x90: now invalid
    c.expect_close({1007})


gen_case("6.4.4", "fail fast: the single byte that makes a frame invalid -> 1007 at once",
         _t_6_4_4)

# ---- 7 close handling ----


def _t_7_1_1(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.expect_close({1000})


gen_case("7.1.1", "close 1000 -> close 1000 echoed, TCP closed by the node", _t_7_1_1)


def _t_7_1_2(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.expect_close({1000})


gen_case("7.1.2", "close twice -> one close, the second ignored", _t_7_1_2)


def _t_7_1_3(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.send_frame(OP_PING, b"after close")
    c.expect_close({1000})


gen_case("7.1.3", "ping after close -> no pong", _t_7_1_3)


def _t_7_1_4(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.send_frame(OP_TEXT, json.dumps({"action": "heartbeat", "requestId": "late"}))
    c.expect_close({1000})


gen_case("7.1.4", "text after close -> not processed", _t_7_1_4)


def _t_7_1_5(c):
    c.send_frame(OP_TEXT, b'{"action":', fin=False)
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.send_frame(OP_CONT, b'"heartbeat"}', fin=True)
    c.expect_close({1000})


gen_case("7.1.5", "fragment, close, continuation -> close, message not processed", _t_7_1_5)


def _t_7_1_6(c):
    rid = c.rid()
    c.send_frame(OP_TEXT, heartbeat_of_size(256 * 1024, rid))
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000))
    c.send_frame(OP_PING, b"after close")
    c.expect_close({1000}, allow_before=(OP_TEXT,))


gen_case("7.1.6", "256 KiB message, close, ping -> close (no pong)", _t_7_1_6)


def _t_7_3_1(c):
    c.send_frame(OP_CLOSE, b"")
    c.expect_close({None, 1000})


gen_case("7.3.1", "close without payload -> close (no status or 1000)", _t_7_3_1)


def _t_7_3_2(c):
    c.send_frame(OP_CLOSE, b"\x03")
    c.expect_close({1002})


gen_case("7.3.2", "close with a 1-byte payload -> 1002", _t_7_3_2)


def _t_7_3_3(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"Hello World!")
    code, reason = c.expect_close({1000})


gen_case("7.3.3", "close 1000 with a reason -> 1000", _t_7_3_3)


def _t_7_3_4(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"*" * 123)
    c.expect_close({1000})


gen_case("7.3.4", "close 1000 with a 123-byte reason (125-byte payload) -> 1000", _t_7_3_4)


def _t_7_3_5(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"*" * 124)
    c.expect_close({1002})


gen_case("7.3.5", "close with a 124-byte reason (126-byte payload) -> 1002", _t_7_3_5)


def _t_7_5_1(c):
    c.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                 b"\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")
    c.expect_close({1007})


gen_case("7.5.1", "close reason with invalid UTF-8 -> 1007", _t_7_5_1)


def _t_7_5_2(c):
    data = frame(OP_CLOSE, struct.pack("!H", 1000) + b"valid so far, then " + b"\x81\x00")
    c.send(data[:-2])
    time.sleep(0.1)  # the invalid bytes arrive in a later read
    c.send(data[-2:])
    c.expect_close({1007})


gen_case("7.5.2", "close reason whose invalid UTF-8 arrives in a later read -> 1007", _t_7_5_2)

for i, code in enumerate([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                          4000, 4999], 1):
    def t(c, code=code):
        c.send_frame(OP_CLOSE, struct.pack("!H", code))
        c.expect_close({code})
    gen_case(f"7.7.{i}", f"close with valid code {code} -> echoed", t)

# 1012-1014 were registered after RFC 6455 (IANA); both answers are defensible, so they
# are not asserted here.
for i, code in enumerate([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
                          65535], 1):
    def t(c, code=code):
        c.send_frame(OP_CLOSE, struct.pack("!H", code))
        c.expect_close({1002})
    gen_case(f"7.9.{i}", f"close with invalid code {code} -> 1002", t)

# ---- 12 compression (permessage-deflate, RFC 7692) ----

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


def _deflate_conn(port):
    c = Conn(port, DEFLATE_OFFER)
    if not c.deflate:
        c.close()
        raise NotApplicable("not applicable (compression off: permessage-deflate not negotiated)")
    return c


def _compress(data, ctx=None):
    co = ctx or zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


def _comp(size, frag=None, reuse=False):
    def t(port):
        c = _deflate_conn(port)
        try:
            # A client keeps its context only when the server allows it: a response with
            # client_no_context_takeover (natter always sends it, RFC 7692 §7.1.1.2)
            # obliges the client to compress each message alone.
            takeover = reuse and "client_no_context_takeover" not in \
                c.headers.get("sec-websocket-extensions", "")
            ctx = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) \
                if takeover else None
            for _ in range(3 if reuse else 1):
                rid = Conn.rid()
                body = _compress(heartbeat_of_size(size, rid), ctx)
                if frag:
                    pieces = [body[i:i + frag] for i in range(0, len(body), frag)] or [b""]
                    for i, p in enumerate(pieces):
                        c.send_frame(OP_TEXT if i == 0 else OP_CONT, p,
                                     fin=i == len(pieces) - 1, rsv=4 if i == 0 else 0)
                else:
                    c.send_frame(OP_TEXT, body, rsv=4)
                c.expect_reply(rid, ("heartbeat",))
        finally:
            c.close()
    return t


for i, (size, frag, reuse) in enumerate([(64, None, False), (1024, None, False),
                                         (65536, None, False), (4096, 100, False),
                                         (1024, None, True)], 1):
    what = f"compressed text, {size} bytes" + (f", fragments of {frag}" if frag else "") + \
        (", context takeover across 3 messages" if reuse else "")
    CASES.append((f"12.1.{i}", what, ("raw", _comp(size, frag, reuse))))


def _t_12_2_1(port):
    c = _deflate_conn(port)
    try:
        bomb = _compress(b" " * (MAX_MSG * 4))
        c.send_frame(OP_TEXT, bomb, rsv=4)
        c.expect_close({1009})
    finally:
        c.close()


CASES.append(("12.2.1", "compressed message inflating past max-message-bytes -> 1009",
              ("raw", _t_12_2_1)))


def _t_12_2_2(port):
    c = _deflate_conn(port)
    try:
        c.send_frame(OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv=4)
        c.expect_close({1007, 1002})
    finally:
        c.close()


CASES.append(("12.2.2", "corrupt deflate data -> connection failed",
              ("raw", _t_12_2_2)))


def _t_12_2_3(port):
    c = _deflate_conn(port)
    try:
        c.send_frame(OP_TEXT, _compress(b"ok"), fin=False, rsv=4)
        c.send_frame(OP_CONT, _compress(b"x"), fin=True, rsv=4)
        c.expect_close({1002})
    finally:
        c.close()


CASES.append(("12.2.3", "RSV1 on a continuation frame -> 1002", ("raw", _t_12_2_3)))


# ------------------------------------------------------------------------------ runner

def run_case(port, fn):
    if isinstance(fn, tuple):  # ("raw", f): the case opens its own connections
        fn[1](port)
        return
    c = Conn(port)
    try:
        fn(c)
    finally:
        c.close()


def start_node(binary, args):
    def free_port():
        with socket.socket() as s:
            s.bind((HOST, 0))
            return s.getsockname()[1]
    port, api = free_port(), free_port()
    argv = [binary, "--listen", f"{HOST}:{port}", "--api-listen", f"{HOST}:{api}",
            "--jwt-secret", SECRET, "--node-id", "conformance", "--log-level", "warn",
            "--max-message-bytes", str(MAX_MSG), "--send-queue-bytes", str(8 * MAX_MSG),
            "--rate-limit", "0", "--ping-interval", "300", "--idle-timeout", "600",
            "--drain-grace", "0"] + list(args)
    log = open(os.environ.get("CONFORMANCE_LOG", os.devnull), "ab")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 20 * SCALE
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"conformance: natter-node exited with {p.returncode} at start")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return p, port
        except OSError:
            time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    raise SystemExit("conformance: natter-node did not start listening")


def stop_node(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15 * SCALE)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    return p.returncode


def main():
    global SECRET
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="natter-node binary to start")
    ap.add_argument("--port", type=int, help="port of a running node (with --secret)")
    ap.add_argument("--secret", default=SECRET)
    ap.add_argument("--cases", default="", help="comma-separated case id prefixes")
    ap.add_argument("--node-arg", action="append", default=[], help="extra natter-node flag")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    SECRET = a.secret
    if not a.bin and not a.port:
        ap.error("give --bin or --port")
    prefixes = [p for p in a.cases.split(",") if p]
    sel = [c for c in CASES if not prefixes or
           any(c[0] == p or c[0].startswith(p + ".") for p in prefixes)]

    proc = None
    port = a.port
    if a.bin:
        proc, port = start_node(a.bin, a.node_arg)
    results = []
    t0 = time.monotonic()
    try:
        for cid, desc, fn in sel:
            t1 = time.monotonic()
            try:
                run_case(port, fn)
                res, detail = "pass", ""
            except NotApplicable as e:
                res, detail = "n/a", str(e)
            except CaseFailed as e:
                res, detail = "FAIL", str(e)
            except Exception as e:  # noqa: BLE001 - any client-side error fails the case
                res, detail = "FAIL", f"{type(e).__name__}: {e}"
            ms = (time.monotonic() - t1) * 1000
            results.append((cid, desc, res, detail, ms))
            if a.verbose or res == "FAIL":
                print(f"  {cid:8} {res:5} {desc}{' — ' + detail if detail else ''}",
                      file=sys.stderr)
    finally:
        rc = stop_node(proc) if proc else 0

    groups = {"1": "framing", "2": "ping/pong", "3": "reserved bits", "4": "opcodes",
              "5": "fragmentation", "6": "UTF-8", "7": "close handling",
              "12": "compression"}
    w = max(len(d) for _, d, _, _, _ in results) if results else 10
    w = min(w, 78)
    print(f"{'case':8} {'result':6} {'ms':>6}  description")
    print("-" * (24 + w))
    for cid, desc, res, detail, ms in results:
        print(f"{cid:8} {res:6} {ms:6.0f}  {desc[:w]}")
        if res in ("FAIL", "n/a"):
            print(f"{'':24}{detail}")
    print("-" * (24 + w))
    print("group                 pass  fail   n/a")
    for g, name in groups.items():
        rs = [r for r in results if r[0].split(".")[0] == g]
        if rs:
            print(f"{g + ' ' + name:20} {sum(r[2] == 'pass' for r in rs):5} "
                  f"{sum(r[2] == 'FAIL' for r in rs):5} {sum(r[2] == 'n/a' for r in rs):5}")
    npass = sum(r[2] == "pass" for r in results)
    nfail = sum(r[2] == "FAIL" for r in results)
    nna = sum(r[2] == "n/a" for r in results)
    print(f"conformance: {len(results)} cases in {time.monotonic() - t0:.1f}s"
          + (f"; {nna} not applicable (compression off)" if nna else ""))
    if proc and rc not in (0, None):
        print(f"conformance: natter-node exited with {rc} on SIGTERM (sanitizer report?)")
        nfail += 1
    print(f"conformance: {npass} passed, {nfail} failed, {nna} skipped")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())

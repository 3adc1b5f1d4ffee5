"""natter_nats: a tiny asyncio NATS client and protobuf wire codec for the integration tests
and the test backend (tests/integration/route_backend.py). Debian has no Python NATS
library, and the NATS text protocol (INFO/CONNECT/PUB/HPUB/SUB/UNSUB/MSG/HMSG/PING/PONG) is
small; natter's protobuf messages are decoded field by field with a varint reader.

Only what the tests need: publish, subscribe (optionally in a queue group), request/reply
with no-responders detection, flush. Every wait is bounded by the caller.
"""

import asyncio
import itertools
import json
import os
import struct
import urllib.parse

# ---------------------------------------------------------------------------------------
# Protobuf wire format (proto3, no groups)
# ---------------------------------------------------------------------------------------


def _varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def pb_fields(buf):
    """Decodes one message into {field number: [values]} (ints for varints and fixed
    fields, bytes for length-delimited ones)."""
    out = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v = struct.unpack_from("<Q", buf, i)[0]
            i += 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v = bytes(buf[i:i + n])
            if len(v) != n:
                raise ValueError("truncated field")
            i += n
        elif wt == 5:
            v = struct.unpack_from("<I", buf, i)[0]
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def _enc_varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_encode(fields):
    """Encodes [(number, value)]: int/bool as varint, str/bytes as length-delimited."""
    out = bytearray()
    for num, v in fields:
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int):
            out += _enc_varint(num << 3) + _enc_varint(v)
        else:
            if isinstance(v, str):
                v = v.encode()
            out += _enc_varint(num << 3 | 2) + _enc_varint(len(v)) + v
    return bytes(out)


def _sint64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


EVENT_KINDS = {1: "connect", 2: "disconnect", 3: "join", 4: "leave"}
REASONS = {0: None, 1: "client_close", 2: "timeout", 3: "slow_consumer", 4: "kicked",
           5: "node_lost", 6: "protocol_error", 7: "server_shutdown"}


def decode_event(buf):
    """natter.Event → dict (kind and reason as names)."""
    f = pb_fields(buf)

    def s(n):
        return f.get(n, [b""])[-1].decode()

    def i(n):
        return _sint64(f.get(n, [0])[-1])
    return {"kind": EVENT_KINDS.get(i(1), i(1)), "tenant": s(2), "user": s(3), "conn": s(4),
            "node": s(5), "room": s(6), "timestamp_ms": i(7),
            "reason": REASONS.get(i(8), i(8)), "source_ip": s(9), "user_agent": s(10)}


ENVELOPE_FIELDS = {1: "id", 2: "tenant", 3: "room", 4: "target_user", 5: "sender_user",
                   6: "sender_conn", 7: "origin_node", 8: "timestamp_ms", 9: "kind",
                   10: "payload", 11: "exclude_sender", 12: "target_conn", 13: "status",
                   14: "action", 15: "request_id"}
_ENV_INTS = {8, 9, 11, 13}
_ENV_BYTES = {10}


def decode_envelope(buf):
    f = pb_fields(buf)
    out = {}
    for num, name in ENVELOPE_FIELDS.items():
        if num in _ENV_INTS:
            out[name] = _sint64(f.get(num, [0])[-1])
        elif num in _ENV_BYTES:
            out[name] = f.get(num, [b""])[-1]
        else:
            out[name] = f.get(num, [b""])[-1].decode()
    return out


def decode_auth_request(buf):
    f = pb_fields(buf)

    def s(n):
        return f.get(n, [b""])[-1].decode()
    headers = {}
    for h in f.get(13, []):
        hf = pb_fields(h)
        headers[hf.get(1, [b""])[-1].decode()] = hf.get(2, [b""])[-1].decode()
    return {"tenant": s(1), "user": s(2), "conn": s(3), "node": s(4), "source_ip": s(5),
            "user_agent": s(6), "origin": s(7), "path": s(8), "query": s(9),
            "rooms": [r.decode() for r in f.get(10, [])],
            "has_rooms_claim": bool(f.get(11, [0])[-1]), "exp": _sint64(f.get(12, [0])[-1]),
            "headers": headers, "timestamp_ms": _sint64(f.get(14, [0])[-1])}


def encode_auth_reply(allow, reason="", rooms=None):
    fields = [(1, bool(allow))]
    if reason:
        fields.append((2, reason))
    if rooms is not None:
        fields.append((3, True))
        fields += [(4, r) for r in rooms]
    return pb_encode(fields)


# ---------------------------------------------------------------------------------------
# NATS client
# ---------------------------------------------------------------------------------------

class NoResponders(Exception):
    pass


class Msg:
    __slots__ = ("subject", "reply", "data", "headers")

    def __init__(self, subject, reply, data, headers):
        self.subject, self.reply, self.data, self.headers = subject, reply, data, headers

    @property
    def no_responders(self):
        return self.headers is not None and self.headers.startswith(b"NATS/1.0 503")


class Nats:
    """Connect with `await Nats.connect(url)`; close with `await nc.close()`."""

    def __init__(self, reader, writer, name):
        self.r, self.w, self.name = reader, writer, name
        self._sids = itertools.count(1)
        self._subs = {}            # sid -> callback(Msg) or asyncio.Queue
        self._pongs = []
        self._inbox = "_INBOX." + os.urandom(8).hex()
        self._reqs = {}            # token -> future
        self._req_ids = itertools.count(1)
        self._inbox_sid = None
        self._task = None
        self.closed = False

    @classmethod
    async def connect(cls, url, name="natter-test", timeout=5.0):
        u = urllib.parse.urlparse(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(u.hostname or "127.0.0.1", u.port or 4222), timeout)
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"not a NATS server: {line[:80]!r}")
        nc = cls(reader, writer, name)
        opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                "protocol": 1, "name": name, "lang": "python-test", "version": "0"}
        writer.write(b"CONNECT " + json.dumps(opts).encode() + b"\r\n")
        nc._task = asyncio.create_task(nc._read_loop())
        await nc.flush(timeout)
        return nc

    async def _read_loop(self):
        r = self.r
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                line = line.rstrip(b"\r\n")
                if line.startswith(b"MSG "):
                    p = line.split(b" ")
                    subject, sid = p[1].decode(), int(p[2])
                    reply = p[3].decode() if len(p) == 5 else None
                    n = int(p[-1])
                    data = (await r.readexactly(n + 2))[:n]
                    self._dispatch(sid, Msg(subject, reply, data, None))
                elif line.startswith(b"HMSG "):
                    p = line.split(b" ")
                    subject, sid = p[1].decode(), int(p[2])
                    reply = p[3].decode() if len(p) == 6 else None
                    hlen, total = int(p[-2]), int(p[-1])
                    blob = (await r.readexactly(total + 2))[:total]
                    self._dispatch(sid, Msg(subject, reply, blob[hlen:], blob[:hlen]))
                elif line == b"PING":
                    self.w.write(b"PONG\r\n")
                elif line == b"PONG":
                    if self._pongs:
                        fut = self._pongs.pop(0)
                        if not fut.done():
                            fut.set_result(True)
                elif line.startswith(b"-ERR"):
                    print(f"natter_nats {self.name}: server error {line!r}")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            for fut in self._pongs + list(self._reqs.values()):
                if not fut.done():
                    fut.set_exception(ConnectionError("NATS connection closed"))

    def _dispatch(self, sid, msg):
        if sid == self._inbox_sid:
            token = msg.subject.rsplit(".", 1)[-1]
            fut = self._reqs.pop(token, None)
            if fut and not fut.done():
                if msg.no_responders:
                    fut.set_exception(NoResponders(msg.subject))
                else:
                    fut.set_result(msg)
            return
        target = self._subs.get(sid)
        if target is None:
            return
        if isinstance(target, asyncio.Queue):
            target.put_nowait(msg)
        else:
            res = target(msg)
            if asyncio.iscoroutine(res):
                asyncio.ensure_future(res)

    async def flush(self, timeout=5.0):
        """PING/PONG round trip: everything sent before is processed by the server."""
        fut = asyncio.get_running_loop().create_future()
        self._pongs.append(fut)
        self.w.write(b"PING\r\n")
        await self.w.drain()
        await asyncio.wait_for(fut, timeout)

    async def subscribe(self, subject, cb=None, queue=None):
        """Returns (sid, target): target is `cb`, or an asyncio.Queue of Msg when cb is
        None. Call flush() before relying on the subscription."""
        sid = next(self._sids)
        target = cb if cb is not None else asyncio.Queue()
        self._subs[sid] = target
        q = f" {queue}" if queue else ""
        self.w.write(f"SUB {subject}{q} {sid}\r\n".encode())
        await self.w.drain()
        return sid, target

    async def unsubscribe(self, sid):
        self._subs.pop(sid, None)
        self.w.write(f"UNSUB {sid}\r\n".encode())
        await self.w.drain()

    async def publish(self, subject, data=b"", reply=None):
        if isinstance(data, str):
            data = data.encode()
        rp = f" {reply}" if reply else ""
        self.w.write(f"PUB {subject}{rp} {len(data)}\r\n".encode() + data + b"\r\n")
        await self.w.drain()

    async def request(self, subject, data=b"", timeout=5.0):
        """Returns the reply Msg; raises NoResponders or asyncio.TimeoutError."""
        if self._inbox_sid is None:
            self._inbox_sid = next(self._sids)
            self.w.write(f"SUB {self._inbox}.* {self._inbox_sid}\r\n".encode())
        token = str(next(self._req_ids))
        fut = asyncio.get_running_loop().create_future()
        self._reqs[token] = fut
        await self.publish(subject, data, reply=f"{self._inbox}.{token}")
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._reqs.pop(token, None)

    async def close(self):
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except BaseException:  # noqa: BLE001
                pass
        try:
            self.w.close()
            await asyncio.wait_for(self.w.wait_closed(), 2)
        except Exception:  # noqa: BLE001
            pass


class EventCollector:
    """Subscribes to natter.events.<tenant>.> and keeps every decoded Event."""

    def __init__(self, nc, tenant="*"):
        self.nc, self.tenant = nc, tenant
        self.events = []
        self._cond = asyncio.Event()

    async def start(self):
        await self.nc.subscribe(f"natter.events.{self.tenant}.>", self._on)
        await self.nc.flush()
        return self

    def _on(self, msg):
        ev = decode_event(msg.data)
        ev["subject"] = msg.subject
        self.events.append(ev)
        self._cond.set()

    def matching(self, **fields):
        return [e for e in self.events if all(e.get(k) == v for k, v in fields.items())]

    async def expect(self, timeout, **fields):
        """Waits for an event whose fields equal `fields`; returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = self.matching(**fields)
            if got:
                return got[0]
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no event {fields} within {timeout:.1f}s; got "
                                     f"{self.events[-20:]}")
            self._cond.clear()
            try:
                await asyncio.wait_for(self._cond.wait(), left)
            except asyncio.TimeoutError:
                pass

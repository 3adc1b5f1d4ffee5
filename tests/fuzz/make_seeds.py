#!/usr/bin/env python3
"""Writes the small seed corpora of tests/fuzz/corpus/<target>/ (checked in; rerun after
changing a format). fuzz_envelope's seeds come from the target itself:
FZ_WRITE_SEEDS=tests/fuzz/corpus/fuzz_envelope build-fuzz/fuzz_envelope."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


UPGRADE = ("GET /ws?token=abc.def.ghi&x=%41 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
           "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
           "Sec-WebSocket-Protocol: chat, natter.v1\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
           "Authorization: Bearer xyz\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n")
# http: data[0] = control byte (slicing, limits, keep-alive)
put("fuzz_http", "upgrade", b"\x00" + UPGRADE.encode())
put("fuzz_http", "upgrade-sliced", b"\x03" + UPGRADE.encode())
put("fuzz_http", "api-post", b"\xc0" + b"POST /v1/tenants/t1/rooms/r/messages HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"message\":\"hi\"}\n"
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
put("fuzz_http", "chunked", b"\xc0" + b"POST /@connections/abc HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
put("fuzz_http", "http10", b"\x00GET / HTTP/1.0\r\n\r\n")
put("fuzz_http", "bad-version", b"\x00GET /ws HTTP/2.0\r\n\r\n")

# proto: one client text frame
for i, m in enumerate([
        {"action": "joinRoom", "roomId": "lobby", "requestId": "r1"},
        {"action": "joinRoom", "roomId": "lobby", "since": 41, "requestId": 7},
        {"action": "leaveRoom", "roomId": "lobby"},
        {"action": "sendMessage", "roomId": "lobby", "message": {"text": "héllo", "n": [1, 2.5, None]},
         "excludeSelf": True},
        {"action": "sendToUser", "userId": "bob", "message": "hi"},
        {"action": "heartbeat"},
        {"action": "presence", "roomId": "lobby"},
        {"action": "presence"},
        {"action": "history", "roomId": "lobby", "limit": 50, "before": 100},
        {"action": "custom.thing", "data": {"a": 1}, "requestId": "x"},
]):
    put("fuzz_proto", f"msg{i}", json.dumps(m, ensure_ascii=False))
put("fuzz_proto", "bad-dup", '{"action":"heartbeat","action":"x"}')
put("fuzz_proto", "bad-id", '{"action":"joinRoom","roomId":"a.b"}')

# jwt: data[0] % 3 = mode
put("fuzz_jwt", "hs-raw", b"\x00eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIiwidGVuYW50IjoidCIsImV4cCI6MTcwMDAwMDEwMH0.c2ln")
put("fuzz_jwt", "none", b"\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
put("fuzz_jwt", "signed-claims", b"\x01" + b'{"alg":"HS256","typ":"JWT"}\x00' +
    json.dumps({"sub": "alice", "tenant": "acme", "exp": 1700000100, "nbf": 1699999000,
                "rooms": ["lobby", "team-*", "*"]}).encode())
put("fuzz_jwt", "signed-tid", b"\x01" + b'{"alg":"HS256"}\x00' +
    json.dumps({"sub": "bob", "tid": "t2", "exp": 1700000100.5}).encode())
put("fuzz_jwt", "signed-default-tenant", b"\x01" + b'{"alg":"HS256","crit":["x"]}\x00' +
    json.dumps({"sub": "carol", "exp": 1700000100}).encode())
put("fuzz_jwt", "es-raw", b"\x02eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0." + b"A" * 86)

# api: data[0] = method (1 GET, 3 POST, 0 DELETE), "path\0authorization"
for i, (m, p) in enumerate([(1, "/healthz"), (1, "/readyz"), (1, "/metrics"),
                            (1, "/@connections/abcDEF123"), (3, "/@connections/abc"),
                            (0, "/@connections/abc"), (3, "/v1/tenants/t1/rooms/r%2D1/messages"),
                            (3, "/v1/tenants/t1/users/u1/messages"),
                            (1, "/v1/tenants/t1/rooms/r/presence"), (4, "/v1/tenants/t1")]):
    put("fuzz_api", f"route{i}", bytes([m]) + p.encode() + b"\x00Bearer admin-token")


# ws: data[0] bit 7 = structured records [b0][len16][payload]; bits 0-6 = slice
def rec(b0, payload):
    payload = payload if isinstance(payload, bytes) else payload.encode()
    return bytes([b0]) + struct.pack("!H", len(payload)) + payload


def client_frame(b0, payload, mask=b"\x01\x02\x03\x04"):
    n = len(payload)
    head = bytes([b0])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


hb = '{"action":"heartbeat","requestId":"h1"}'
join = '{"action":"joinRoom","roomId":"lobby","requestId":"j1"}'
send = '{"action":"sendMessage","roomId":"lobby","message":{"t":"x"},"requestId":"s1"}'
put("fuzz_ws", "structured-chat", b"\x80" + rec(0x81, join) + rec(0x81, send) + rec(0x81, hb)
    + rec(0x89, "ping") + rec(0x81, '{"action":"presence","roomId":"lobby"}')
    + rec(0x81, '{"action":"leaveRoom","roomId":"lobby"}') + rec(0x88, b"\x03\xe8bye"))
put("fuzz_ws", "structured-fragments", b"\x80" + rec(0x01, hb[:10]) + rec(0x89, "p")
    + rec(0x00, hb[10:20]) + rec(0x80, hb[20:]))
put("fuzz_ws", "structured-bad-utf8", b"\x80" + rec(0x01, b'{"action":"\xce') + rec(0x80, b'\xff"}'))
put("fuzz_ws", "structured-binary", b"\x80" + rec(0x82, b"\x00\x01") + rec(0x8a, "") + rec(0xc1, hb))
put("fuzz_ws", "raw-frames", b"\x00" + client_frame(0x81, hb.encode()) + client_frame(0x89, b"x" * 125)
    + client_frame(0x88, b"\x03\xe9"))
put("fuzz_ws", "raw-sliced", b"\x05" + client_frame(0x81, join.encode()) + client_frame(0x81, send.encode()))
put("fuzz_ws", "raw-unmasked", b"\x00\x81\x02{}")
import zlib  # noqa: E402


def deflate(data):
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = co.compress(data.encode() if isinstance(data, str) else data) + co.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


# data[0] bit 6: the upgrade offers permessage-deflate; RSV1 (0x40 in b0) marks compressed
put("fuzz_ws", "pmd-compressed", b"\xc0" + rec(0xc1, deflate(hb)) + rec(0xc1, deflate(join))
    + rec(0x41, deflate(send)[:10]) + rec(0x80, deflate(send)[10:]))
put("fuzz_ws", "pmd-zip-bomb", b"\xc0" + rec(0xc1, deflate(" " * 100000)))
put("fuzz_ws", "pmd-corrupt", b"\xc0" + rec(0xc1, b"\xff\xfe\xfd not deflate"))
put("fuzz_ws", "raw-16bit", b"\x00" + client_frame(0x81, ('{"action":"heartbeat","pad":"' + "y" * 300 + '"}').encode()))

# api_http: data[0] = write slice; the rest is one keep-alive API connection.
# MEMBER is fuzz_api_http's member connection id (FZ_PRINT_MEMBER=1 build-fuzz/fuzz_api_http).
MEMBER = "HKNQTWZcfilorux0369A"
AUTH = "Authorization: Bearer fuzz-admin-token\r\n"


def req(method, path, body=None, auth=True, extra=""):
    b = b"" if body is None else (body if isinstance(body, bytes) else body.encode())
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n" + (AUTH if auth else "") + extra
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n"
    return head.encode() + b"\r\n" + b


put("fuzz_api_http", "push-get-delete", b"\x00" + req("POST", f"/@connections/{MEMBER}", "hello")
    + req("POST", f"/@connections/{MEMBER}", b"\xff\x00binary") + req("GET", f"/@connections/{MEMBER}")
    + req("DELETE", f"/@connections/{MEMBER}"))
put("fuzz_api_http", "room-user-presence", b"\x00"
    + req("POST", "/v1/tenants/t1/rooms/r/messages", '{"message":{"text":"hi","n":[1,2]}}')
    + req("POST", "/v1/tenants/t1/users/member/messages", '{"message":"direct"}')
    + req("GET", "/v1/tenants/t1/rooms/r/presence"))
put("fuzz_api_http", "health-metrics", b"\x05" + req("GET", "/healthz", auth=False)
    + req("GET", "/readyz", auth=False) + req("GET", "/metrics", auth=False))
put("fuzz_api_http", "errors", b"\x00" + req("GET", "/@connections/unknownconn")
    + req("POST", "/v1/tenants/t1/rooms/r/messages", '{"nomessage":1}')
    + req("POST", "/v1/tenants/t1/rooms/r/messages", "not json")
    + req("GET", "/nope") + req("GET", "/@connections/x", auth=False)
    + req("POST", "/v1/tenants/t1/rooms/r%2E/messages", '{"message":1}'))
put("fuzz_api_http", "chunked", b"\x00" + b"POST /v1/tenants/t1/rooms/r/messages HTTP/1.1\r\nHost: x\r\n"
    + AUTH.encode() + b"Transfer-Encoding: chunked\r\n\r\n10\r\n{\"message\":true}\r\n0\r\n\r\n")

# data[0] bits 6-7: the API reader (1 a 2 KiB window, 2 a 16 KiB window that stops reading
# while the requests arrive, 3 the same with 2 KiB): pipelined requests whose answers wait.
put("fuzz_api_http", "pipelined-metrics-stalled", b"\xc0" + req("GET", "/metrics", auth=False) * 10)
put("fuzz_api_http", "pipelined-mixed-window", b"\xc0" + (req("GET", "/metrics", auth=False)
    + req("POST", "/v1/tenants/t1/rooms/r/messages", '{"message":"p"}')
    + req("GET", "/v1/tenants/t1/rooms/r/presence?limit=1") + req("GET", "/healthz", auth=False)) * 6)
put("fuzz_api_http", "pipelined-window", b"\x41" + req("GET", "/metrics", auth=False) * 8
    + req("GET", f"/@connections/{MEMBER}") + req("GET", "/readyz", auth=False, extra="Connection: close\r\n")
    + req("GET", "/healthz", auth=False))

# pages: data[0] bits 0-1 window (none, 1, 4, 16 KiB), bit 2 stalled reader, bits 3-4 ms per
# loop turn (0, 1, 5, 250), bit 5 deflate offered, bits 6-7 written in 1/2/4/8 pieces; then
# fuzz_ws's records. Rooms: "crowd" (300 users of t1 online elsewhere), "big" (seq 1..60,
# 20..3,000 bytes each), "small" (seq 61..80).
def act(**kw):
    return rec(0x81, json.dumps(kw, separators=(",", ":")))


put("fuzz_pages", "presence-tenant", b"\x01" + act(action="presence", requestId="p1"))
put("fuzz_pages", "presence-tenant-cursor", b"\x02" + act(action="presence", limit=7, cursor="7", requestId="p2")
    + act(action="presence", limit=1000, requestId="p3"))
put("fuzz_pages", "presence-room", b"\x01" + act(action="presence", roomId="crowd", limit=50, requestId="p4"))
put("fuzz_pages", "history-big", b"\x01" + act(action="history", roomId="big", limit=500, requestId="h1"))
put("fuzz_pages", "history-before", b"\x52" + act(action="history", roomId="big", limit=5, before=30, requestId="h2")
    + act(action="history", roomId="small", requestId="h3"))
put("fuzz_pages", "join-since-paced", b"\x11" + act(action="joinRoom", roomId="big", since=1, requestId="j1"))
put("fuzz_pages", "join-since-stalled", b"\x1d" + act(action="joinRoom", roomId="big", since=1, requestId="j2"))
put("fuzz_pages", "join-since-pmd", b"\x31" + act(action="joinRoom", roomId="big", since=20, requestId="j3")
    + rec(0x89, "p") + act(action="joinRoom", roomId="small", since=70))
put("fuzz_pages", "mixed-pieces", b"\x89" + act(action="joinRoom", roomId="crowd", requestId="j4")
    + act(action="presence", requestId="p5") + act(action="history", roomId="big", requestId="h4")
    + act(action="joinRoom", roomId="big", since=40, requestId="j5")
    + act(action="sendMessage", roomId="big", message="live", requestId="s1")
    + act(action="leaveRoom", roomId="big", requestId="l1"))

# ws: fragment reassembly — the per-message frame cap (1,024: 1009 past it), pings between
# fragments, the byte cap over fragments (--max-message-bytes 4096 in fuzz_ws), deflate.
put("fuzz_ws", "fragments-over-cap", b"\x80" + rec(0x01, "[") + rec(0x00, "") * 1030 + rec(0x80, "]"))
put("fuzz_ws", "fragments-with-pings", b"\x80" + rec(0x01, hb[:1]) + b"".join(
    rec(0x00, hb[i:i + 1]) + (rec(0x89, "x") if i % 4 == 0 else b"") for i in range(1, len(hb) - 1))
    + rec(0x80, hb[-1:]) + rec(0x81, hb))
put("fuzz_ws", "fragments-over-bytes", b"\x80" + rec(0x01, "[" + "1," * 300) + rec(0x00, "1," * 900)
    + rec(0x00, "1," * 900) + rec(0x80, "1]"))
put("fuzz_ws", "fragments-binary", b"\x80" + rec(0x02, b"\x00" * 10) + rec(0x8a, "") + rec(0x80, b"\x01" * 10))
z = deflate(join)
parts = [z[i:i + 2] for i in range(0, len(z), 2)]
put("fuzz_ws", "pmd-fragments", b"\xc0" + rec(0x41, parts[0]) + b"".join(
    rec(0x00, q) + (rec(0x89, "") if i == 3 else b"") for i, q in enumerate(parts[1:-1]))
    + rec(0x80, parts[-1]) + rec(0xc1, deflate(hb)))
# found by fuzz_pages: the history page of a room with nothing stored (NULL + 0, UBSan)
put("fuzz_pages", "regress-history-empty-room", b"\x00" + act(action="history", roomId="empty", requestId="e"))

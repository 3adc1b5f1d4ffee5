"""smoke_test: proves a running compose cluster (docker/test.sh starts it) from the outside,
through haproxy's one published port on 127.0.0.1:

  1. every node container is ready and the image's HEALTHCHECK passes;
  2. WebSocket clients land on different nodes, join one room, and a message sent on one
     node reaches the clients on the others (NATS between the nodes);
  3. the demo page is served (when web/index.html exists), and /natter.js is the client;
     the public port refuses the HTTP API (/v1/..., /@connections/..., /metrics: 404),
     haproxy's internal API listener serves it;
  4. one node container is stopped (`podman stop`: SIGTERM to natter-node as PID 1): its
     /readyz turns 503 during the drain, its client is closed with 1001 after the grace,
     reconnects through haproxy to another node and rejoins, messages flow again, and the
     container exits with code 0 within the stop timeout;
  5. presence works through Sentinel (the nodes find the primary with NATTER_REDIS_SENTINEL):
     the room's members are the connected users; then the Redis primary's container is
     killed (`podman stop -t 0`): the sentinels promote the replica, presence answers again
     through haproxy, a user who left during the failover is gone (no ghost) and was
     announced offline, and no node restarted.

Usage: smoke_test.py PORT PROJECT   (secrets from NATTER_JWT_SECRET / NATTER_ADMIN_TOKEN)
Prints one line per check and timings; exits non-zero on the first failure. Reuses the
integration tests' client (tests/integration/natter_harness.py).
"""

import asyncio
import json
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import natter_harness as nh  # noqa: E402

PORT = int(sys.argv[1])
PROJECT = sys.argv[2]
SECRET = os.environ["NATTER_JWT_SECRET"]
BASE = f"http://127.0.0.1:{PORT}"
WS = f"ws://127.0.0.1:{PORT}/ws"
GRACE = float(os.environ.get("NATTER_DRAIN_GRACE", "5"))
STOP_TIMEOUT = 20


def log(msg):
    print(f"  smoke: {msg}", flush=True)


def podman(*args, check=True, timeout=60):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def container(service):
    out = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                 "--filter", f"label=com.docker.compose.service={service}",
                 "--format", "{{.Names}}").stdout.split()
    if len(out) != 1:
        raise AssertionError(f"expected one container for {service}, got {out}")
    return out[0]


def node_get(service, path, port=8080):
    """GET http://<service>:8080<path> from inside the haproxy container (bash /dev/tcp:
    the images have no curl; `podman exec` into a container that is being stopped is
    refused, so the draining node is probed from its neighbour). Returns the status code,
    or None when nothing answers."""
    script = (f"exec 3<>/dev/tcp/{service}/{port} || exit 7; "
              f"printf 'GET {path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3; "
              "IFS= read -r -t 3 line <&3; echo \"$line\"")
    r = podman("exec", container("haproxy"), "bash", "-c", script, check=False, timeout=10)
    parts = r.stdout.split()
    return int(parts[1]) if r.returncode == 0 and len(parts) > 1 else None


def token(user):
    return nh.make_token(user, "demo", secret=SECRET)


async def connect(user):
    return await nh.Client.connect(WS, user, "demo", token=token(user), name=user)


async def exchange(sender, receivers, room, text):
    """sender says `text` in `room`; every receiver must get it (id from the ack)."""
    ack = await sender.say(room, {"text": text})
    for c in receivers:
        await c.expect("message", id=ack["id"], roomId=room, timeout=10)
    return ack


async def main():
    nodes = {s: container(s) for s in ("natter-1", "natter-2", "natter-3")}

    # 1. readiness of each node, and the HEALTHCHECK the image declares
    t0 = time.monotonic()
    for s, ctr in nodes.items():
        await nh.async_wait_until(lambda s=s: node_get(s, "/readyz") == 200, 60,
                                  interval=0.5, what=f"{s} /readyz == 200")
        r = podman("healthcheck", "run", ctr, check=False)
        if r.returncode != 0:
            raise AssertionError(f"HEALTHCHECK of {s} failed: {r.stdout} {r.stderr}")
    log(f"3 nodes ready, HEALTHCHECK healthy ({time.monotonic() - t0:.1f}s after haproxy)")

    # 2. clients on different nodes; a message crosses nodes. haproxy admits a node after
    # two good checks 2 s apart (scripts/haproxy.cfg.in: rise 2), so a node that just
    # became ready may get no client for up to ~4 s: connect for up to 15 s, keeping at
    # most 4 clients per node (the others are closed at once).
    clients, by_node, i = [], {}, 0
    deadline = time.monotonic() + 15
    while len(clients) < 12 and time.monotonic() < deadline:
        c = await connect(f"user{i}")
        i += 1
        node = c.welcome.get("node")
        if len(by_node.get(node, [])) >= 4:
            await c.close()
            await asyncio.sleep(0.5)
            continue
        clients.append(c)
        by_node.setdefault(node, []).append(c)
        if len(by_node) == 3 and len(clients) >= 6:
            break
    if len(by_node) < 2:
        raise AssertionError(f"all clients landed on one node: {list(by_node)}")
    log(f"{len(clients)} clients via haproxy on nodes {sorted(by_node)}")
    for c in clients:
        await c.join("lobby")
    first, *others = [cs[0] for cs in by_node.values()]
    t1 = time.monotonic()
    await exchange(first, others + [first], "lobby", "hello across nodes")
    log(f"message from {first.welcome['node']} delivered to clients on "
        f"{[c.welcome['node'] for c in others]} ({(time.monotonic() - t1) * 1000:.0f} ms)")

    # 3. the demo page on the one published port
    status, body = nh.http_get(BASE + "/", timeout=5)
    if os.path.exists(os.path.join(ROOT, "web", "index.html")):
        if status != 200:
            raise AssertionError(f"GET / through haproxy: {status}")
        log(f"demo page served through haproxy ({len(body)} bytes)")
        # the JavaScript client the page imports: the image's copy of clients/js/natter.js
        status, body = nh.http_get(BASE + "/natter.js", timeout=5)
        with open(os.path.join(ROOT, "clients", "js", "natter.js"), "rb") as f:
            want = f.read()
        if status != 200 or body != want:
            raise AssertionError(f"GET /natter.js through haproxy: {status}, "
                                 f"{len(body)} bytes, not clients/js/natter.js")
        log(f"/natter.js served through haproxy ({len(body)} bytes, = clients/js/natter.js)")
    else:
        log(f"GET / -> {status} (web/index.html not in the tree yet)")
    for path in ("/v1/tenants/demo/rooms/lobby/messages", "/@connections/abc", "/metrics"):
        status, _ = nh.http_get(BASE + path, timeout=5)
        if status != 404:
            raise AssertionError(f"the public port answered {path} with {status}, not 404")
    status = node_get("127.0.0.1", "/metrics", port=8081)  # inside the haproxy container
    if status != 200:
        raise AssertionError(f"haproxy's internal API listener answered /metrics with {status}")
    log("public port refuses /v1/, /@connections/, /metrics; the internal API listener serves them")

    # 4. drain one node: stop its container, as docker/podman/compose would
    victim_node = first.welcome["node"]
    victim = nodes[victim_node]
    victims = by_node[victim_node]
    survivors = [c for c in clients if c not in victims]
    t2 = time.monotonic()
    stop = subprocess.Popen(["podman", "stop", "-t", str(STOP_TIMEOUT), victim],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    await nh.async_wait_until(lambda: node_get(victim_node, "/readyz") == 503, 5, interval=0.2,
                              what=f"{victim_node} /readyz == 503 while draining")
    log(f"{victim_node}: /readyz 503 during the drain "
        f"({(time.monotonic() - t2) * 1000:.0f} ms after SIGTERM)")
    # during the grace, the draining node still serves its clients
    await exchange(victims[0], survivors[:1], "lobby", "during the grace")
    for v in victims:
        code, _ = await v.wait_closed(GRACE + 10)
        if code != 1001:
            raise AssertionError(f"{v.name}: closed with {code}, expected 1001")
    closed_after = time.monotonic() - t2
    log(f"{len(victims)} client(s) of {victim_node} closed with 1001 after {closed_after:.1f}s "
        f"(grace {GRACE:g}s)")
    back = []
    for v in victims:
        c = await connect(v.name)
        if c.welcome.get("node") == victim_node:
            raise AssertionError(f"{v.name} reconnected to the draining node {victim_node}")
        await c.join("lobby")
        back.append(c)
    await exchange(back[0], survivors, "lobby", "back on another node")
    log(f"reconnected through haproxy to {sorted({c.welcome['node'] for c in back})}, "
        f"rejoined, messages flow")
    _, err = await asyncio.to_thread(stop.communicate, timeout=STOP_TIMEOUT + 15)
    stopped_after = time.monotonic() - t2
    info = state(victim)
    if info.get("Running") or info.get("ExitCode") != 0:
        raise AssertionError(f"{victim_node} after podman stop: running={info.get('Running')} "
                             f"exit={info.get('ExitCode')} {err}")
    if stopped_after >= STOP_TIMEOUT:
        raise AssertionError(f"{victim_node} needed SIGKILL ({stopped_after:.1f}s)")
    log(f"{victim_node} container exited 0, {stopped_after:.1f}s after SIGTERM "
        f"(no SIGKILL)")

    # 5. presence through Sentinel, then a failover of the Redis primary
    everyone = survivors + back
    observer, leaver = everyone[0], everyone[-1]
    users = sorted(c.name for c in everyone)
    got = await members(observer, "lobby")
    if got != users:
        raise AssertionError(f"presence through Sentinel: {got}, connected {users}")
    primary = await asyncio.to_thread(sentinel_primary)
    if primary not in ("redis", "redis-replica"):
        raise AssertionError(f"the sentinels name the primary {primary!r}")
    log(f"presence through Sentinel lists the {len(users)} connected users; primary {primary}")
    started = {s: state(c)["StartedAt"] for s, c in nodes.items() if s != victim_node}
    t3 = time.monotonic()
    await asyncio.to_thread(podman, "stop", "-t", "0", container(primary))
    await leaver.close()   # leaves while the primary is gone
    await nh.async_wait_until(lambda: sentinel_primary() not in (None, primary), 40,
                              interval=0.5, what="the sentinels to promote the replica")
    t_agree = time.monotonic() - t3
    promoted = await asyncio.to_thread(sentinel_primary)
    want = [u for u in users if u != leaver.name]
    end = time.monotonic() + 30
    while (got := await members(observer, "lobby")) != want:
        if time.monotonic() > end:
            raise AssertionError(f"presence after the failover: {got}, want {want}")
        await asyncio.sleep(0.5)
    t_back = time.monotonic() - t3
    await observer.expect("presence", userId=leaver.name, status="offline", timeout=10)
    for s, c in nodes.items():
        if s == victim_node:
            continue
        now = state(c)
        if not now.get("Running") or now.get("StartedAt") != started[s]:
            raise AssertionError(f"{s} restarted or stopped during the Redis failover: {now}")
    log(f"Redis primary {primary} killed: the sentinels promoted {promoted} after "
        f"{t_agree:.1f}s; presence answered again {t_back:.1f}s after the kill "
        f"({t_back - t_agree:.1f}s after the sentinels agreed), {leaver.name} who left "
        f"meanwhile gone and announced offline, no node restarted")
    await nh.close_all(*clients, *back)


def sentinel_primary():
    """The host name the first sentinel that answers gives for the primary (None when
    none does)."""
    for s in ("sentinel-1", "sentinel-2", "sentinel-3"):
        try:
            r = podman("exec", container(s), "redis-cli", "-p", "26379", "SENTINEL",
                       "get-master-addr-by-name", "natter", check=False, timeout=20)
        except subprocess.TimeoutExpired:
            continue
        out = r.stdout.split()
        if r.returncode == 0 and out:
            return out[0]
    return None


async def members(c, room):
    """Sorted user ids of `room` from a `presence` request, or None on an error reply."""
    rid = await c.action("presence", roomId=room)
    f = await c.expect(None, pred=lambda f: f.get("requestId") == rid, timeout=10)
    if f.get("type") != "members":
        return None
    return sorted(m["userId"] for m in f.get("members", []))


def state(ctr):
    return json.loads(podman("inspect", ctr).stdout)[0]["State"]


if __name__ == "__main__":
    try:
        nh.run(main(), timeout=180)
    except AssertionError as e:
        print(f"  smoke: FAIL: {e}", flush=True)
        sys.exit(1)
    print("  smoke: all checks passed", flush=True)

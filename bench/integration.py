#!/usr/bin/python3
"""bench/integration.py — route invocations through the HTTP integration (--integration-url,
a trivial local backend) versus the same route over NATS (natter.route.<action>, the test
route backend), on one node.

  bench/integration.py [--bin build-rel/natter-node] [--conns 100] [--rate 400]
                       [--duration 10] [--out DIR]

Starts nats-server, redis-server, one node and both backends (all by PID, on free loopback
ports, stopped at the end), then per route:
  latency:    --conns connections send --rate frames/s in total (one in flight each), the
              round trip client -> node -> backend -> node -> client, p50/p99;
  throughput: the same connections in a closed loop (one in flight each): completions/s.
The load generator is Python (websockets, one process): at saturation it may be the limit,
which is why both routes are measured with the same client. Prints one JSON line per
measurement and a Markdown table.
"""
import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import natter_harness as nh  # noqa: E402
import websockets  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


async def client(node, user, action, stop_at, interval, rtts):
    tok = nh.make_token(user, "bench")
    async with websockets.connect(node.ws_url(tok), max_size=None, ping_interval=None,
                                  compression=None) as ws:
        json.loads(await ws.recv())  # welcome
        i = 0
        nxt = time.monotonic()
        while time.monotonic() < stop_at:
            if interval:
                nxt += interval
                await asyncio.sleep(max(0, nxt - time.monotonic()))
            i += 1
            t0 = time.perf_counter()
            await ws.send(json.dumps({"action": action, "id": i, "type": "pong"}))
            f = json.loads(await ws.recv())
            got = f.get("id") if action == "pinghttp" else f.get("data", {}).get("echo", {}).get("id")
            if got != i:
                raise RuntimeError(f"unexpected frame {f}")
            rtts.append(time.perf_counter() - t0)


async def measure(node, action, conns, rate, duration):
    rtts = []
    stop_at = time.monotonic() + 1 + duration
    interval = conns / rate if rate else 0
    await asyncio.gather(*(client(node, f"b{action}{i}", action, stop_at, interval, rtts)
                           for i in range(conns)))
    return {"route": action, "mode": "paced" if rate else "closed", "conns": conns,
            "rate": rate, "n": len(rtts), "per_s": len(rtts) / (duration + 1),
            "p50_ms": pct(rtts, 0.5) * 1000, "p99_ms": pct(rtts, 0.99) * 1000}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-rel", "natter-node"))
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--rate", type=float, default=400)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="natter-integ-bench-")
    h = nh.Harness(a.bin, out)
    try:
        nats, redis = h.nats(), h.redis()
        port = nh.free_port()
        log, name = h._log("http-backend")
        hb = h._start(nh.Proc(name, [sys.executable, os.path.join(ROOT, "bench",
                                                                  "integ_http_backend.py"),
                                     "--port", str(port)], log))
        log, name = h._log("nats-backend")
        nb = h._start(nh.Proc(name, [sys.executable, os.path.join(
            ROOT, "tests", "integration", "route_backend.py"), "--nats", nats.url,
            "--route", "pingnats"], log))
        nh.wait_until(lambda: any(r.get("ready") for r in hb.log_lines_json()) and
                      any(r.get("ready") for r in nb.log_lines_json()), 15, what="backends")
        node = h.node("A", nats=nats, redis=redis, env={"NATTER_TEST_LOG_LEVEL": "warn"},
                      args=["--log-level", "warn", "--rate-limit", "0",
                            "--integration-url", f"http://127.0.0.1:{port}/",
                            "--integration-routes", "pinghttp"])
        rows = []
        for action in ("pingnats", "pinghttp"):
            for rate in (a.rate, 0):
                r = asyncio.run(measure(node, action, a.conns, rate, a.duration))
                print(json.dumps(r), flush=True)
                rows.append(r)
        m = nh.node_metrics(node)
        print(json.dumps({"integration_failures": m.get("natter_integration_failures_total"),
                          "invocations": m.get("natter_integration_invocations_total")}))
        print("\n| route | load | completions/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
        for r in rows:
            load = f"{r['rate']:.0f}/s paced" if r["rate"] else "closed loop"
            print(f"| {r['route']} | {r['conns']} conns, {load} | {r['per_s']:.0f} | "
                  f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    finally:
        problems = h.close()
        if problems:
            print("\n".join(problems), file=sys.stderr)
    print(f"logs: {out}")


if __name__ == "__main__":
    main()

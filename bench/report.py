#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

  report.py annotate OUT.jsonl GEN.json key=value...   append the generator's JSON line
                                                       with the script's measurements
  report.py mark OUT.jsonl key=value...                set keys on the last result
  report.py last OUT.jsonl KEY                         print a key of the last result
  report.py connz URL                                  print "name out_bytes in_bytes" per
                                                       NATS client connection
  report.py metric URL NAME                            print one counter of a /metrics page
  report.py table OUT.jsonl                            print the comparison table (medians)
  report.py check OUT.jsonl                            exit 1 when a smoke run looks broken
"""
import json
import statistics
import sys
import urllib.request


def _num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def annotate(out, gen, kvs):
    try:
        with open(gen) as f:
            line = f.read().strip().splitlines()
        d = json.loads(line[-1]) if line else {}
    except (OSError, ValueError, IndexError):
        d = {}
    if not d:
        d = {"error": "generator produced no result"}
    for kv in kvs:
        k, _, v = kv.partition("=")
        if v.startswith("{") or v.startswith("["):
            d[k] = json.loads(v)
        else:
            d[k] = _num(v)
    with open(out, "a") as f:
        f.write(json.dumps(d, sort_keys=True) + "\n")
    return d


def _rows(out):
    with open(out) as f:
        return [json.loads(l) for l in f if l.strip()]


def mark(out, kvs):
    rows = _rows(out)
    for kv in kvs:
        k, _, v = kv.partition("=")
        rows[-1][k] = _num(v)
    with open(out, "w") as f:
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def connz(url):
    d = {}
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url + "/connz?limit=1024", timeout=5) as r:
                d = json.load(r)
            break
        except (OSError, ValueError) as e:
            print("connz: %s" % e, file=sys.stderr)
    for c in d.get("connections", []):
        print(c.get("name") or ("cid%d" % c["cid"]), c.get("out_bytes", 0), c.get("in_bytes", 0))


def metric(url, name):
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                print(line.split()[1])
                return
    print(0)


def med(rows, key, sub=None):
    vals = []
    for r in rows:
        v = r.get(key)
        if sub is not None and isinstance(v, dict):
            v = v.get(sub)
        if isinstance(v, (int, float)):
            vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    return ("{:,.%df}" % digits).format(v)


def ratio(a, b, inverse=False):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    return "%.1f×" % ((b / a) if inverse else (a / b))


def table(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    # runs repeated because the hypervisor stole CPU (bench/run.sh gen_fanout)
    discarded = [r for r in rows if r.get("discarded")]
    rows = [r for r in rows if not r.get("discarded")]

    def sel(**kw):
        return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]

    out = []
    p = out.append
    nruns = max([r.get("run", 1) for r in rows] or [1])
    p("natter-bench results (%s, medians of %d run%s)" % (path, nruns, "s" if nruns > 1 else ""))
    if discarded:
        by = {}
        for r in discarded:
            by[r.get("system")] = by.get(r.get("system"), 0) + 1
        p("Runs repeated because the hypervisor stole more than NB_MAX_STEAL (default 0.02) "
          "cores while they measured: %s." % ", ".join("%s %d" % kv for kv in sorted(by.items())))
    if not sel(system="natter-history") or sel(system="socketio"):
        p("Ratios: higher-is-better metrics natter/Socket.IO, lower-is-better ones Socket.IO/natter.")
        p("")
        p("| scenario | metric | natter | Socket.IO | natter advantage |")
        p("|---|---|---:|---:|---:|")
    history_only = sel(system="natter-history") and not sel(system="socketio")
    for sc, title in (("s1", "1 fan-out %s msg/s"), ("s2", "2 fan-out max rate")):
        n, s = sel(scenario=sc, system="natter"), sel(scenario=sc, system="socketio")
        if (not n and not s) or history_only:
            continue
        if "%s" in title:
            title = title % fmt(med(n or s, "rate"), 0)
        lines = [
            ("deliveries/s", "deliveries_per_s", None, False, 0),
            ("delivery ratio", "delivery_ratio", None, False, 4),
            ("latency p50 ms", "lat_ms", "p50", True, 2),
            ("latency p90 ms", "lat_ms", "p90", True, 2),
            ("latency p99 ms", "lat_ms", "p99", True, 2),
            ("latency p99.9 ms", "lat_ms", "p999", True, 2),
            ("latency max ms", "lat_ms", "max", True, 2),
            ("server CPU (cores)", "server_cores", None, True, 2),
            ("server CPU µs/delivery", "cpu_us_per_delivery", None, True, 2),
            ("background CPU (cores, others)", "bg_cores", None, None, 2),
            ("CPU stolen by the hypervisor (cores)", "steal_cores", None, None, 3),
        ]
        for label, key, sub, inv, dg in lines:
            a, b = med(n, key, sub), med(s, key, sub)
            r = "" if inv is None else ratio(a, b, inverse=inv)
            if key == "delivery_ratio":
                r = ""
            p("| %s | %s | %s | %s | %s |" % (title, label, fmt(a, dg), fmt(b, dg), r))
    hist = sel(system="natter-history")
    if hist:
        p("")
        p("History on vs off — natter, 2 nodes; history on: JetStream stream NATTER_ROOMS, "
          "file storage, 1 replica (ratio = on / off, medians)")
        p("")
        p("| scenario | metric | history off | history on | on / off |")
        p("|---|---|---:|---:|---:|")
        for sc, title in (("s1", "1 fan-out %s msg/s"), ("s2", "2 fan-out max rate")):
            off, on = sel(scenario=sc, system="natter"), sel(scenario=sc, system="natter-history")
            if not on:
                continue
            if "%s" in title:
                title = title % fmt(med(off or on, "rate"), 0)
            for label, key, sub, dg in (
                    ("deliveries/s", "deliveries_per_s", None, 0),
                    ("delivery ratio", "delivery_ratio", None, 4),
                    ("latency p50 ms", "lat_ms", "p50", 2),
                    ("latency p99 ms", "lat_ms", "p99", 2),
                    ("latency max ms", "lat_ms", "max", 2),
                    ("server CPU (cores)", "server_cores", None, 2),
                    ("server CPU µs/delivery", "cpu_us_per_delivery", None, 2),
                    ("background CPU (cores, others)", "bg_cores", None, 2),
                    ("CPU stolen by the hypervisor (cores)", "steal_cores", None, 3)):
                a, b = med(off, key, sub), med(on, key, sub)
                r = "" if key in ("delivery_ratio", "bg_cores", "steal_cores") or not a or b is None \
                    else "%.2f" % (b / a)
                p("| %s | %s | %s | %s | %s |" % (title, label, fmt(a, dg), fmt(b, dg), r))
            # per run: the on/off ratio of runs paired by run number (same machine moment)
            pairs = []
            for rn in sorted({r.get("run") for r in on}):
                x = [r for r in off if r.get("run") == rn]
                y = [r for r in on if r.get("run") == rn]
                if x and y and x[0].get("deliveries_per_s") and y[0].get("deliveries_per_s"):
                    pairs.append("%.2f" % (y[0]["deliveries_per_s"] / x[0]["deliveries_per_s"]))
            stored = " ".join("%s/%s" % (fmt(r.get("history_stored"), 0),
                                         fmt(r.get("history_live_only"), 0)) for r in on)
            p("| %s | per run: deliveries/s on/off; messages stored/live-only | | | %s; %s |" % (
                title, " ".join(pairs) or "—", stored))
    for pattern, what in (("steady", ""), ("storm", ", storm")):
        # rows written before arrival patterns existed are the steady pattern
        n = [r for r in sel(scenario="s3", system="natter") if r.get("pattern", "steady") == pattern]
        s = [r for r in sel(scenario="s3", system="socketio") if r.get("pattern", "steady") == pattern]
        if n or s:
            for label, key, inv, dg in (("idle joined connections", "ready", None, 0),
                                        ("RSS per connection (bytes)", "rss_per_conn", True, 0),
                                        ("RSS per connection at the peak (bytes)", "rss_peak_per_conn", True, 0),
                                        ("RSS before / after (MiB)", None, None, 1)):
                if key is None:
                    a = "%s / %s" % (fmt(med(n, "rss_before_kb") and med(n, "rss_before_kb") / 1024),
                                     fmt(med(n, "rss_after_kb") and med(n, "rss_after_kb") / 1024))
                    b = "%s / %s" % (fmt(med(s, "rss_before_kb") and med(s, "rss_before_kb") / 1024),
                                     fmt(med(s, "rss_after_kb") and med(s, "rss_after_kb") / 1024))
                    p("| 3 memory%s | %s | %s | %s | |" % (what, label, a, b))
                    continue
                a, b = med(n, key), med(s, key)
                r = "" if inv is None else ratio(a, b, inverse=inv)
                p("| 3 memory%s | %s | %s | %s | %s |" % (what, label, fmt(a, dg), fmt(b, dg), r))
    lim = sel(scenario="s3limit", system="natter")
    if lim:
        r = lim[-1]
        p("| 3 limit | --max-connections %s, %s tried | %s ready, %s got 503, ratio %s, node %s | | %s |" % (
            r.get("max_connections"), r.get("conns"), r.get("ready"), r.get("rejected_503"),
            fmt(r.get("delivery_ratio"), 4), "alive" if r.get("node_alive") else "DEAD",
            "PASS" if r.get("limit_ok") else "FAIL"))
    n, s = sel(scenario="s4", system="natter"), sel(scenario="s4", system="socketio")
    if n or s:
        a, b = med(n, "connect_rate"), med(s, "connect_rate")
        p("| 4 connect rate | authenticated connections/s (one node) | %s | %s | %s |" % (
            fmt(a, 0), fmt(b, 0), ratio(a, b)))
        a, b = med(n, "handshake_ms", "p99"), med(s, "handshake_ms", "p99")
        p("| 4 connect rate | handshake p99 ms (connect to ready) | %s | %s | %s |" % (
            fmt(a, 1), fmt(b, 1), ratio(a, b, inverse=True)))
    s5 = sel(scenario="s5", system="natter")
    if s5:
        p("")
        p("Scenario 5 — natter scale-out shape (3 nodes, same total load; a room's members over K nodes)")
        p("")
        p("| K nodes per room | deliveries/s | p99 ms | NATS → node KB/s (per node) | node CPU % (per node) | node CPU µs/delivery | NATS CPU % |")
        p("|---:|---:|---:|---|---|---:|---:|")
        for k in sorted({r.get("spread") for r in s5}):
            rr = [r for r in s5 if r.get("spread") == k]
            nb = [statistics.median([r["nats_kbps"][i] for r in rr if r["nats_kbps"][i] is not None] or [0])
                  for i in range(len(rr[0].get("nats_kbps", [])))]
            nc = [statistics.median([r["node_cpu_pct"][i] for r in rr]) for i in range(len(rr[0].get("node_cpu_pct", [])))]
            p("| %s | %s | %s | %s | %s | %s | %s |" % (
                k, fmt(med(rr, "deliveries_per_s"), 0), fmt(med(rr, "lat_ms", "p99"), 2),
                " / ".join(fmt(x, 0) for x in nb), " / ".join(fmt(x, 1) for x in nc),
                fmt(med(rr, "cpu_us_per_delivery"), 2), fmt(med(rr, "nats_cpu_pct"), 1)))
    print("\n".join(out))


def check(path):
    ok = True
    with open(path) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    if not rows:
        print("check: no results", file=sys.stderr)
        return 1
    for r in rows:
        name = "%s/%s" % (r.get("scenario"), r.get("system"))
        if "error" in r:
            print("check: %s: %s" % (name, r["error"]), file=sys.stderr)
            ok = False
            continue
        if r.get("scenario") in ("s1", "s2", "s5"):
            if not r.get("delivered") or r.get("delivery_ratio") is None:
                print("check: %s delivered nothing" % name, file=sys.stderr)
                ok = False
        if r.get("system") == "natter-history":
            if not r.get("history_stored"):
                print("check: %s: history on stored nothing" % name, file=sys.stderr)
                ok = False
            elif r.get("history_live_only"):  # the stream did not acknowledge within 1 s
                print("check: %s: warning: %s publication(s) went out live-only (an "
                      "overloaded machine?)" % (name, r.get("history_live_only")), file=sys.stderr)
        if r.get("scenario") == "s3limit" and not r.get("limit_ok"):
            print("check: %s: the node did not refuse politely at its limit" % name, file=sys.stderr)
            ok = False
        if r.get("scenario") in ("s3", "s4") and not r.get("ready"):
            print("check: %s: no connection got ready" % name, file=sys.stderr)
            ok = False
    print("check: %d results, %s" % (len(rows), "ok" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd = argv[1]
    if cmd == "annotate":
        annotate(argv[2], argv[3], argv[4:])
    elif cmd == "mark":
        mark(argv[2], argv[3:])
    elif cmd == "last":
        print(_rows(argv[2])[-1].get(argv[3], 0))
    elif cmd == "connz":
        connz(argv[2])
    elif cmd == "metric":
        metric(argv[2], argv[3])
    elif cmd == "table":
        table(argv[2])
    elif cmd == "check":
        return check(argv[2])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

  report.py annotate OUT.jsonl GEN.json key=value...   append the generator's JSON line
                                                       with the script's measurements
  report.py mark OUT.jsonl key=value...                set keys on the last result
  report.py last OUT.jsonl KEY                         print a key of the last result
  report.py connz URL                                  print "name out_bytes in_bytes" per
                                                       NATS client connection
  report.py metric URL NAME                            print one counter of a /metrics page
  report.py sample FILE SECONDS REDIS_PORT NATS_MON label=PID...
                                                       every 0.25 s (at most SECONDS), one JSON
                                                       line: CPU ticks and RSS of each PID,
                                                       Redis commands and memory, NATS /varz
                                                       messages and bytes, /connz bytes per
                                                       client name; stops on SIGTERM
  report.py window SAMPLES T0 T1                       the figures of the samples between two
                                                       wall times (JSON, see window())
  report.py phases OUT.jsonl GEN.json SAMPLES key=value...
                                                       append the generator's line with the
                                                       windows of its phases (connect, idle,
                                                       measure, before the kill, storm)
  report.py table OUT.jsonl                            print the comparison table (medians)
  report.py check OUT.jsonl                            exit 1 when a smoke run looks broken
"""
import json
import os
import signal
import socket
import statistics
import sys
import time
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


def _redis_info(port):
    """total_commands_processed and used_memory of the Redis on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
        s.sendall(b"INFO\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if b"\r\n" in buf:
                n = int(buf[1:buf.index(b"\r\n")])
                if len(buf) >= buf.index(b"\r\n") + 2 + n:
                    break
    out = {}
    for line in buf.decode(errors="replace").splitlines():
        k, _, v = line.partition(":")
        if k in ("total_commands_processed", "used_memory"):
            out[k] = int(v)
    return out


# node gauges the sampler keeps (natter_ stripped): presence operations waiting for the
# Redis window, connections
_NODE_GAUGES = ("natter_presence_queued ", "natter_connections ")


def _tcp_ext():
    """Machine-wide TCP counters that explain a slow storm (accept queue overflows, SYN
    cookies sent) from /proc/net/netstat."""
    want = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPReqQFullDrop")
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for i in range(0, len(lines) - 1, 2):
        if lines[i].startswith("TcpExt:"):
            names, vals = lines[i].split()[1:], lines[i + 1].split()[1:]
            return {n: int(v) for n, v in zip(names, vals) if n in want}
    return {}


def _sockstat():
    """TCP sockets in use and the kernel's TCP buffer memory (KiB) from /proc/net/sockstat:
    both ends of every loopback connection are on this machine."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    p = line.split()
                    d = dict(zip(p[1::2], (int(x) for x in p[2::2])))
                    return {"inuse": d.get("inuse", 0), "mem_kb": d.get("mem", 0) * os.sysconf("SC_PAGE_SIZE") // 1024}
    except (OSError, ValueError):
        pass
    return {}


def _get_json(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)


def sample(path, seconds, redis_port, nats_mon, labels):
    """Every 0.25 s until SIGTERM or SECONDS: one line of process and server counters."""
    pids, apis = {}, {}
    for kv in labels:  # label=PID or label=PID,API_URL (a node: its /metrics too)
        k, _, v = kv.partition("=")
        pid, _, api = v.partition(",")
        pids[k] = int(pid)
        if api:
            apis[k] = api
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    end = time.time() + float(seconds)
    with open(path, "a") as f:
        while not stop and time.time() < end:
            t = time.time()
            row = {"t": round(t, 3), "cpu": {}, "rss": {}}
            for k, pid in pids.items():
                try:
                    with open("/proc/%d/stat" % pid) as st:
                        fields = st.read().rsplit(")", 1)[1].split()
                    row["cpu"][k] = int(fields[11]) + int(fields[12])
                    with open("/proc/%d/status" % pid) as st:
                        for line in st:
                            if line.startswith("VmRSS:"):
                                row["rss"][k] = int(line.split()[1])
                except (OSError, IndexError, ValueError):
                    pass  # the process is gone (the killed node)
            row["tcp"] = _tcp_ext()
            row["sockstat"] = _sockstat()
            for k, api in apis.items():
                try:
                    with urllib.request.urlopen(api + "/metrics", timeout=1) as m:
                        for line in m.read().decode().splitlines():
                            if line.startswith(_NODE_GAUGES):
                                name, val = line.split()[:2]
                                row.setdefault("m", {}).setdefault(k, {})[name[7:]] = float(val)
                except (OSError, ValueError):
                    pass
            try:
                row["redis"] = _redis_info(redis_port)
            except (OSError, ValueError):
                pass
            try:
                v = _get_json(nats_mon + "/varz")
                row["nats"] = {k: v.get(k, 0) for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes",
                                                        "subscriptions", "mem")}
                try:
                    j = _get_json(nats_mon + "/jsz")
                    row["nats"]["js_msgs"], row["nats"]["js_bytes"] = j.get("messages", 0), j.get("bytes", 0)
                except (OSError, ValueError):
                    pass  # no JetStream
                c = _get_json(nats_mon + "/connz?limit=1024")
                row["connz"] = {}
                for cn in c.get("connections", []):
                    name = cn.get("name") or ("cid%d" % cn["cid"])
                    a = row["connz"].setdefault(name, [0, 0])
                    a[0] += cn.get("out_bytes", 0)
                    a[1] += cn.get("in_bytes", 0)
            except (OSError, ValueError):
                pass
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            time.sleep(max(0.0, 0.25 - (time.time() - t)))


def _samples(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def window(path, t0, t1, inner=False):
    """Figures between wall times t0 and t1 (the samples just outside them; with inner, the
    last sample before t1, for a window that must not reach into what follows): per process
    CPU cores and peak RSS (KiB), Redis commands/s and memory, NATS messages/s in and out,
    NATS bytes/s to each client name."""
    rows = _samples(path)
    t0, t1 = float(t0), float(t1)
    before = [r for r in rows if r["t"] <= t0]
    after = [r for r in rows if r["t"] >= t1]
    if inner:
        after = [r for r in rows if r["t"] <= t1][-1:]
    inside = [r for r in rows if t0 <= r["t"] <= t1]
    a = before[-1] if before else (inside[0] if inside else None)
    b = after[0] if after else (inside[-1] if inside else None)
    if not a or not b or b["t"] <= a["t"]:
        return {}
    dt = b["t"] - a["t"]
    hz = os.sysconf("SC_CLK_TCK")
    out = {"window_s": round(dt, 3), "cpu_cores": {}, "rss_peak_kb": {}, "rss_end_kb": {},
           "rss_start_kb": dict(a["rss"])}
    for k in a["cpu"]:
        if k in b["cpu"]:
            out["cpu_cores"][k] = round((b["cpu"][k] - a["cpu"][k]) / hz / dt, 3)
    for k in a["rss"]:
        vals = [r["rss"][k] for r in [a] + inside + [b] if k in r["rss"]]
        out["rss_peak_kb"][k] = max(vals)
        if k in b["rss"]:
            out["rss_end_kb"][k] = b["rss"][k]
    if "redis" in a and "redis" in b:
        out["redis_cmds_per_s"] = round((b["redis"]["total_commands_processed"]
                                         - a["redis"]["total_commands_processed"]) / dt, 1)
        out["redis_mem_kb"] = [a["redis"]["used_memory"] // 1024, b["redis"]["used_memory"] // 1024]
    if "nats" in a and "nats" in b:
        for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
            out["nats_%s_per_s" % k] = round((b["nats"][k] - a["nats"][k]) / dt, 1)
        out["nats_subscriptions"] = b["nats"].get("subscriptions")
        out["nats_mem_kb"] = b["nats"].get("mem", 0) // 1024
        if "js_msgs" in b["nats"]:
            out["js_msgs"], out["js_bytes"] = b["nats"]["js_msgs"], b["nats"]["js_bytes"]
    queued = [r["m"][k].get("presence_queued", 0) for r in [a] + inside + [b] for k in r.get("m", {})]
    if queued:
        out["presence_queued_max"] = max(queued)
    if b.get("sockstat"):
        out["sockstat_end"] = b["sockstat"]
        out["sockstat_start"] = a.get("sockstat")
    if a.get("tcp") and b.get("tcp"):
        out["tcp"] = {k: b["tcp"][k] - a["tcp"].get(k, 0) for k in b["tcp"]}
    if "connz" in a and "connz" in b:
        out["nats_to_client_kbps"] = {
            k: round((b["connz"][k][0] - a["connz"][k][0]) / dt / 1024, 1)
            for k in b["connz"] if k in a["connz"]}
    return out


def phases(out, gen, samples, kvs):
    """The generator's result plus window() of each of its phases, from its wall times:
    w_connect (first sample to the end of connecting), w_idle (the second half of --idle),
    w_measure,
    w_before (as long as the storm, just before the kill), w_storm (the kill until every
    client is back, at least 1 s; 5 s when not all came back)."""
    d = annotate(out + ".tmp", gen, kvs)
    os.unlink(out + ".tmp")
    rows = _samples(samples) if os.path.exists(samples) else []
    go = d.get("go_wall")
    if go and rows:
        idle = d.get("idle_s") or 0
        ready = go - idle - 0.2
        d["w_connect"] = window(samples, rows[0]["t"], ready, inner=True)
        if idle >= 1:  # its second half: what the joins left behind has settled
            d["w_idle"] = window(samples, go - idle / 2, go - 0.1, inner=True)
        ws = go + (d.get("warmup_s") or 0)
        d["w_measure"] = window(samples, ws, ws + d.get("measure_s", 0))
        k = d.get("kill_wall")
        if k:
            length = max(d.get("back_s") or 5.0, 1.0)
            d["w_storm"] = window(samples, k, k + length)
            d["w_before"] = window(samples, k - length, k, inner=True)
    with open(out, "a") as f:
        f.write(json.dumps(d, sort_keys=True) + "\n")
    return d


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



def compare(p, sel, base, other, heading, cols, per_run):
    """Scenarios 1 and 2 of two natter configurations side by side (`other` / `base`)."""
    p("")
    p(heading)
    p("")
    p("| scenario | metric | %s | %s | %s |" % cols)
    p("|---|---|---:|---:|---:|")
    for sc, title in (("s1", "1 fan-out %s msg/s"), ("s2", "2 fan-out max rate")):
        a_rows, b_rows = sel(scenario=sc, system=base), sel(scenario=sc, system=other)
        if not b_rows:
            continue
        if "%s" in title:
            title = title % fmt(med(a_rows or b_rows, "rate"), 0)
        for label, key, sub, dg in (
                ("deliveries/s", "deliveries_per_s", None, 0),
                ("delivery ratio", "delivery_ratio", None, 4),
                ("latency p50 ms", "lat_ms", "p50", 2),
                ("latency p99 ms", "lat_ms", "p99", 2),
                ("latency max ms", "lat_ms", "max", 2),
                ("ack p50 ms (sendMessage → ack)", "ack_ms", "p50", 2),
                ("ack p99 ms", "ack_ms", "p99", 2),
                ("server CPU (cores)", "server_cores", None, 2),
                ("server CPU µs/delivery", "cpu_us_per_delivery", None, 2),
                ("background CPU (cores, others)", "bg_cores", None, 2),
                ("CPU stolen by the hypervisor (cores)", "steal_cores", None, 3)):
            a, b = med(a_rows, key, sub), med(b_rows, key, sub)
            r = "" if key in ("delivery_ratio", "bg_cores", "steal_cores") or not a or b is None \
                else "%.2f" % (b / a)
            p("| %s | %s | %s | %s | %s |" % (title, label, fmt(a, dg), fmt(b, dg), r))
        # per run: the ratio of runs paired by run number (same machine moment)
        pairs = []
        for rn in sorted({r.get("run") for r in b_rows}):
            x = [r for r in a_rows if r.get("run") == rn]
            y = [r for r in b_rows if r.get("run") == rn]
            if x and y and x[0].get("deliveries_per_s") and y[0].get("deliveries_per_s"):
                pairs.append("%.2f" % (y[0]["deliveries_per_s"] / x[0]["deliveries_per_s"]))
        stored = " ".join("%s/%s" % (fmt(r.get("history_stored"), 0),
                                     fmt(r.get("history_live_only"), 0)) for r in b_rows)
        p("| %s | per run: %s | | | %s; %s |" % (title, per_run, " ".join(pairs) or "—", stored))

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
    if (not sel(system="natter-history") or sel(system="socketio")) and \
            [r for r in rows if r.get("scenario") in ("s1", "s2", "s3", "s3limit", "s4")]:
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
    streams = sel(system="natter-streams")
    if streams:
        k = max(r.get("streams", 0) for r in streams)
        compare(p, sel, "natter-history", "natter-streams",
                "History over 1 stream vs %d streams (--history-streams) — natter, 2 nodes, one "
                "nats-server, file storage, 1 replica (ratio = %d / 1, medians)" % (k, k),
                ("1 stream", "%d streams" % k, "%d / 1" % k),
                "deliveries/s %d/1; messages stored/live-only (%d streams)" % (k, k))
    if hist and not streams:
        compare(p, sel, "natter", "natter-history",
                "History on vs off — natter, 2 nodes; history on: JetStream stream NATTER_ROOMS, "
                "file storage, 1 replica (ratio = on / off, medians)",
                ("history off", "history on", "on / off"),
                "deliveries/s on/off; messages stored/live-only")
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
    _storm_tables(sel, p)
    print("\n".join(out))


def _mib(kb):
    return None if kb is None else kb / 1024


def _survivors(w, n):
    """n1..n(N-1): the nodes that were not killed."""
    return ["n%d" % i for i in range(1, n)]


def _storm_rows(r, p, title):
    """The storm figures of one scenario-6/7 result, as table rows."""
    n = r.get("nodes", 3)
    st, bf = r.get("w_storm") or {}, r.get("w_before") or {}
    surv = _survivors(st, n)
    cores = [st.get("cpu_cores", {}).get(k) for k in surv]
    rss = [_mib(st.get("rss_peak_kb", {}).get(k)) for k in surv]
    rss0 = [_mib(bf.get("rss_start_kb", {}).get(k)) for k in surv]
    lines = [
        ("clients that dropped / rejoined / not back", "%s / %s / %s" % (
            fmt(r.get("dropped")), fmt(r.get("rejoined")), fmt(r.get("not_back")))),
        ("back_s: kill → every client rejoined (`joined`)", fmt(r.get("back_s"), 2)),
        ("first drop seen after the kill (s)", fmt(r.get("first_drop_after_kill_s"), 2)),
        ("per client drop → rejoined p50 / p99 / max ms", "%s / %s / %s" % (
            fmt(r.get("back_ms", {}).get("p50"), 0), fmt(r.get("back_ms", {}).get("p99"), 0),
            fmt(r.get("back_ms", {}).get("max"), 0))),
        ("of which: dial → 101 p50 / p99 ms; 101 → `joined` p50 / p99 ms", "%s / %s; %s / %s" % (
            fmt(r.get("reconnect_dial_ms", {}).get("p50"), 0), fmt(r.get("reconnect_dial_ms", {}).get("p99"), 0),
            fmt(r.get("reconnect_join_ms", {}).get("p50"), 0), fmt(r.get("reconnect_join_ms", {}).get("p99"), 0))),
        ("messages expected after `since` (reconnected clients)", fmt(r.get("acct_expected"))),
        ("**lost / duplicated** (out of order, not in the reference)", "**%s / %s** (%s, %s)" % (
            fmt(r.get("lost")), fmt(r.get("duplicated")), fmt(r.get("out_of_order")),
            fmt(r.get("extra")))),
        ("clients that never dropped: messages missing / repeated (against the reference)", "%s / %s" % (
            fmt(r.get("stable_lost")), fmt(r.get("stable_dup")))),
        ("lost by rejoins answered `recovered: true` / `false` (false: nothing replayed, by the protocol)", "%s / %s" % (
            fmt(r.get("lost_recovered")), fmt(r.get("lost_not_recovered")))),
        ("rejoins `recovered: true` / `false` / without since", "%s / %s / %s" % (
            fmt(r.get("recovered_true")), fmt(r.get("recovered_false")), fmt(r.get("no_since")))),
        ("reconnect attempts / refused (503) by a survivor / connection refused", "%s / %s / %s" % (
            fmt(r.get("reconnect_attempts")), fmt(r.get("reconnect_503")),
            fmt(r.get("reconnect_refused")))),
        ("live latency during the storm p50 / p99 / max ms (clients that stayed)", "%s / %s / %s" % (
            fmt(r.get("lat_storm_ms", {}).get("p50"), 1), fmt(r.get("lat_storm_ms", {}).get("p99"), 1),
            fmt(r.get("lat_storm_ms", {}).get("max"), 1))),
        ("survivors' CPU during the storm (cores, each)", " / ".join(fmt(x, 2) for x in cores)),
        ("survivors' RSS before → peak during the storm (MiB, each)", " / ".join(
            "%s → %s" % (fmt(a), fmt(b)) for a, b in zip(rss0, rss))),
        ("Redis commands/s: storm (before)", "%s (%s)" % (
            fmt(st.get("redis_cmds_per_s"), 0), fmt(bf.get("redis_cmds_per_s"), 0))),
        ("NATS msgs/s in / out: storm (before)", "%s / %s (%s / %s)" % (
            fmt(st.get("nats_in_msgs_per_s"), 0), fmt(st.get("nats_out_msgs_per_s"), 0),
            fmt(bf.get("nats_in_msgs_per_s"), 0), fmt(bf.get("nats_out_msgs_per_s"), 0))),
        ("presence operations waiting for the Redis window (most on one node, sampled)",
         fmt(st.get("presence_queued_max"), 0)),
        ("storm window (s); machine-wide TCP accept-queue overflows, SYN cookies in it", "%s; %s, %s" % (
            fmt(st.get("window_s"), 2), fmt((st.get("tcp") or {}).get("ListenOverflows")),
            fmt((st.get("tcp") or {}).get("SyncookiesSent")))),
    ]
    for label, v in lines:
        p("| %s | %s | %s |" % (title, label, v))


def _storm_tables(sel, p):
    s6 = sel(scenario="s6")
    if s6:
        p("")
        p("Scenario 6 — reconnect storm (3 nodes, history on; the victim holds 6/8 of every room)")
        p("")
        p("| variant | metric | value |")
        p("|---|---|---|")
        for r in s6:
            title = "%s %s clients, %s rooms, %s msg/s, run %s" % (
                "kill -9" if r.get("signal") == "KILL" else "drain (SIGTERM)", fmt(r.get("ready")),
                fmt(r.get("rooms")), fmt(r.get("rate"), 0), r.get("run"))
            _storm_rows(r, p, title)
    for r in sel(scenario="s6nosince"):
        p("| negative control: kill -9, rejoin **without** since, run %s | lost / duplicated | "
          "%s / %s (must be > 0: what since saves) |" % (r.get("run"), fmt(r.get("lost")),
                                                        fmt(r.get("duplicated"))))
    s7 = sel(scenario="s7")
    for r in s7:
        n = r.get("nodes", 7)
        ready = r.get("ready") or 0
        c, idle, m = r.get("w_connect") or {}, r.get("w_idle") or {}, r.get("w_measure") or {}
        nodes = ["n%d" % i for i in range(1, n + 1)]
        end = idle or m
        rss_end = [end.get("rss_end_kb", {}).get(k) for k in nodes]
        rss_start = [c.get("rss_start_kb", {}).get(k) for k in nodes]
        per = None
        if ready and all(x is not None for x in rss_end + rss_start):
            per = (sum(rss_end) - sum(rss_start)) * 1024 / ready
        rm0, rm1 = (c.get("redis_mem_kb") or [None, None])[0], (end.get("redis_mem_kb") or [None, None])[1]
        idle_cores = sum(idle.get("cpu_cores", {}).get(k, 0) for k in nodes) if idle else None
        p("")
        p("Scenario 7 — %s connections, %d nodes, run %s (history on; rooms of 100 plus %s rooms of %s)" % (
            fmt(ready), n, r.get("run"), r.get("big_rooms"), fmt(r.get("big_size"))))
        p("")
        p("| phase | metric | value |")
        p("|---|---|---|")
        rows = [
            ("connect", "ready / failed / 503", "%s / %s / %s" % (fmt(ready), fmt(r.get("failed")),
                                                                 fmt(r.get("rejected_503")))),
            ("connect", "connect time (s) / connections/s", "%s / %s" % (
                fmt(r.get("connect_s"), 1), fmt(r.get("connect_rate"), 0))),
            ("connect", "handshake p50 / p99 ms (connect → every join confirmed)", "%s / %s" % (
                fmt(r.get("handshake_ms", {}).get("p50"), 0), fmt(r.get("handshake_ms", {}).get("p99"), 0))),
            ("connect", "Redis commands/s while connecting; per connection (connect + join); redis-server CPU µs per command", "%s; %s; %s" % (
                fmt(c.get("redis_cmds_per_s"), 0),
                fmt(c["redis_cmds_per_s"] * c["window_s"] / ready, 2) if ready and c.get("redis_cmds_per_s") else "—",
                fmt(c.get("cpu_cores", {}).get("redis", 0) / c["redis_cmds_per_s"] * 1e6, 2) if c.get("redis_cmds_per_s") else "—")),
            ("connect", "node CPU while connecting (cores, all nodes); CPU ms per connection", "%s; %s" % (
                fmt(sum(c.get("cpu_cores", {}).get(k, 0) for k in nodes), 2),
                fmt(sum(c.get("cpu_cores", {}).get(k, 0) for k in nodes) * c.get("window_s", 0) / ready * 1e3, 3) if ready else "—")),
            ("idle", "RSS per node (MiB)", " / ".join(fmt(_mib(x)) for x in rss_end)),
            ("idle", "RSS per connection, all nodes (bytes)", fmt(per, 0)),
            ("idle", "Redis used_memory before → after (MiB); per connection (bytes)", "%s → %s; %s" % (
                fmt(_mib(rm0)), fmt(_mib(rm1)),
                fmt((rm1 - rm0) * 1024 / ready, 0) if ready and rm0 is not None and rm1 is not None else "—")),
            ("idle", "NATS subscriptions (all nodes)", fmt(end.get("nats_subscriptions"))),
            ("idle", "kernel: TCP sockets in use, TCP buffer memory (MiB; both ends on this machine)", "%s, %s" % (
                fmt((end.get("sockstat_end") or {}).get("inuse")),
                fmt(_mib((end.get("sockstat_end") or {}).get("mem_kb"))))),
            ("idle", "node CPU, all nodes (cores) at --ping-interval %s; per 10,000 connections" % r.get("ping_interval"),
             "%s; %s" % (fmt(idle_cores, 3), fmt(idle_cores / ready * 10000, 4) if idle_cores is not None and ready else "—")),
            ("idle", "Redis commands/s idle", fmt(idle.get("redis_cmds_per_s"), 0)),
            ("fixed rate", "msg/s; deliveries/s; delivery ratio", "%s; %s; %s" % (
                fmt(r.get("msgs_per_s"), 0), fmt(r.get("deliveries_per_s"), 0), fmt(r.get("delivery_ratio"), 4))),
            ("fixed rate", "latency p50 / p99 / max ms", "%s / %s / %s" % (
                fmt(r.get("lat_ms", {}).get("p50"), 2), fmt(r.get("lat_ms", {}).get("p99"), 2),
                fmt(r.get("lat_ms", {}).get("max"), 2))),
            ("fixed rate", "node CPU (cores, all nodes); µs per delivery", "%s; %s" % (
                fmt(sum(m.get("cpu_cores", {}).get(k, 0) for k in nodes), 2),
                fmt(sum(m.get("cpu_cores", {}).get(k, 0) for k in nodes) / r["deliveries_per_s"] * 1e6, 2)
                if r.get("deliveries_per_s") else "—")),
            ("fixed rate", "nats-server CPU (cores); NATS msgs/s in / out", "%s; %s / %s" % (
                fmt(m.get("cpu_cores", {}).get("nats"), 2), fmt(m.get("nats_in_msgs_per_s"), 0),
                fmt(m.get("nats_out_msgs_per_s"), 0))),
            ("fixed rate", "JetStream: messages stored, bytes per message (file storage)", "%s, %s" % (
                fmt(m.get("js_msgs")), fmt(m["js_bytes"] / m["js_msgs"], 0) if m.get("js_msgs") else "—")),
            ("fixed rate", "NATS → node KB/s (each node, live connection)", " / ".join(
                fmt(m.get("nats_to_client_kbps", {}).get("bench-n%d" % i), 0) for i in range(1, n + 1))),
        ]
        for ph, label, v in rows:
            p("| %s | %s | %s |" % (ph, label, v))
        _storm_rows(r, p, "storm (kill -9 of n%d)" % n)


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
        if r.get("scenario") == "s6nosince" and not r.get("lost"):
            print("check: %s: clients rejoined without since, yet no message counted lost: "
                  "the accounting cannot see a loss" % name, file=sys.stderr)
            ok = False
        if r.get("scenario") == "s8":
            # a room filled below --presence-max-members: each member hears of each other
            # user exactly once, in its joined or as presence online (docs/presence.md)
            n = r.get("fill") or 0
            if r.get("ready") != n or (n <= 1000 and r.get("presence") != n * (n - 1) // 2):
                print("check: %s: %s of %s joined, %s presence frames (want %s: each pair once)" % (
                    name, r.get("ready"), n, r.get("presence"), n * (n - 1) // 2), file=sys.stderr)
                ok = False
        if r.get("scenario") in ("s6", "s7"):
            # the storm must have happened and been accounted: clients dropped, came back,
            # and were compared against the reference (a broken generator shows here)
            if not r.get("dropped") or r.get("not_back") or not r.get("acct_expected"):
                print("check: %s: storm: %s dropped, %s not back, %s messages compared" % (
                    name, r.get("dropped"), r.get("not_back"), r.get("acct_expected")), file=sys.stderr)
                ok = False
            if r.get("lost") or r.get("duplicated") or r.get("stable_lost") or r.get("stable_dup"):
                print("check: %s: %s lost, %s duplicated across the reconnect" % (
                    name, r.get("lost"), r.get("duplicated")), file=sys.stderr)
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
    elif cmd == "phases":
        phases(argv[2], argv[3], argv[4], argv[5:])
    elif cmd == "sample":
        sample(argv[2], argv[3], argv[4], argv[5], argv[6:])
    elif cmd == "window":
        print(json.dumps(window(argv[2], argv[3], argv[4]), sort_keys=True))
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

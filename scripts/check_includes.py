#!/usr/bin/env python3
"""check_includes.py — the include graph of natter's C sources has no circle of more than
two modules (docs/architecture.md).

   scripts/check_includes.py [ROOT]

A module is a file name without its extension and without an `_int` suffix (nt_conn.c,
nt_conn.h = nt_conn; nt_resume_int.h belongs to nt_resume). Every `#include "x.h"` in
lib/, node/, tests/ and bench/ is an edge from the including module to the module of x.h
(headers are found by name anywhere in those folders; generated and system headers are
not modules). Prints each circle (strongly connected component) of more than two modules
and exits 1 when there is one; prints the number of modules and edges otherwise."""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
DIRS = ["lib", "node", "tests", "bench"]
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module(name):
    stem = os.path.splitext(os.path.basename(name))[0]
    return stem[:-4] if stem.endswith("_int") else stem


files, headers = [], set()
for d in DIRS:
    for dirpath, dirnames, names in os.walk(os.path.join(ROOT, d)):
        dirnames[:] = [x for x in dirnames if not x.startswith(("build", "node_modules", "corpus"))]
        for n in names:
            if n.endswith((".c", ".h")):
                files.append(os.path.join(dirpath, n))
                if n.endswith(".h"):
                    headers.add(n)

edges = {}
for f in files:
    m = module(f)
    edges.setdefault(m, set())
    with open(f, encoding="utf-8", errors="replace") as fh:
        for inc in INC.findall(fh.read()):
            base = os.path.basename(inc)
            if base in headers and module(base) != m:
                edges[m].add(module(base))
                edges.setdefault(module(base), set())

# Tarjan's strongly connected components (iterative: no recursion limit)
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
for root in sorted(edges):
    if root in index:
        continue
    work = [(root, iter(sorted(edges[root])))]
    index[root] = low[root] = counter[0]
    counter[0] += 1
    stack.append(root)
    on.add(root)
    while work:
        v, it = work[-1]
        nxt = next(it, None)
        if nxt is not None:
            if nxt not in index:
                index[nxt] = low[nxt] = counter[0]
                counter[0] += 1
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(sorted(edges[nxt]))))
            elif nxt in on:
                low[v] = min(low[v], index[nxt])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[v])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

bad = [c for c in sccs if len(c) > 2]
for c in bad:
    print("include circle of %d modules: %s" % (len(c), " ".join(c)))
if bad:
    sys.exit(1)
print("check_includes: %d modules, %d include edges, no circle of more than two modules"
      % (len(edges), sum(len(v) for v in edges.values())))

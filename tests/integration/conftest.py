"""pytest fixtures for natter's Python integration tests.

NATTER_BIN names the natter-node binary (scripts/test.sh points it at the sanitizer build);
without it the newest of build-asan/ and build/ is used. Each test gets a `harness` that
owns its processes; their logs go to tests/artifacts/<test>/ and are shown when the test
fails. A node that leaves a sanitizer report, exits non-zero on SIGTERM or ignores SIGTERM
fails the test at teardown.
"""

import os
import re
import shutil

import pytest

import natter_harness as nh

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARTIFACTS = os.environ.get("NATTER_TEST_ARTIFACTS", os.path.join(ROOT, "tests", "artifacts"))


def _find_bin():
    b = os.environ.get("NATTER_BIN")
    if b:
        return os.path.abspath(b)
    cands = [os.path.join(ROOT, d, "natter-node") for d in ("build-asan", "build")]
    cands = [c for c in cands if os.path.exists(c)]
    if not cands:
        return os.path.join(ROOT, "build-asan", "natter-node")
    return max(cands, key=os.path.getmtime)


@pytest.fixture(scope="session")
def natter_bin():
    b = _find_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail(f"natter-node binary not found at {b} (set NATTER_BIN or build first: "
                    f"scripts/build.sh --sanitize)")
    for tool in ("nats-server", "redis-server"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not on PATH (run scripts/install-deps.sh)")
    return b


@pytest.fixture
def harness(request, natter_bin):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])[:100]
    d = os.path.join(ARTIFACTS, request.node.module.__name__, name)
    shutil.rmtree(d, ignore_errors=True)
    h = nh.Harness(natter_bin, d)
    request.node._natter_harness = h
    try:
        yield h
    finally:
        problems = h.close()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def cluster(harness):
    """nats-server + redis-server + two clustered nodes A and B (default flags)."""
    nats, redis, (a, b) = harness.cluster(2)
    return nats, redis, a, b


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    h = getattr(item, "_natter_harness", None)
    if h is None or not rep.failed or getattr(item, "_natter_logs_shown", False):
        return
    # Attach the tail of every process's log to the (first) failure report; the whole
    # logs stay in tests/artifacts/.
    item._natter_logs_shown = True
    limit = int(os.environ.get("NATTER_TEST_LOG_TAIL", "8000"))
    for name, text in h.logs():
        if text and len(text) > limit:
            text = "[...]\n" + text[-limit:]
        rep.sections.append((f"log of {name}", text or "(empty)"))

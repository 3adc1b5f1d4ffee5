#!/usr/bin/env bash
# The one test command: installs dependencies, builds with ASan+UBSan into build-asan/,
# runs ctest (unit + C integration tests), the Python integration tests and the web client
# tests (tests/browser/run.sh) against the sanitizer build. Exits non-zero if anything
# fails; prints a summary at the end. Logs and JUnit reports go to tests/artifacts/.
#
#   scripts/test.sh                           everything
#   PYTEST_ARGS="-k core" scripts/test.sh     extra pytest arguments
#   NATTER_SKIP_DEPS=1 scripts/test.sh        skip install-deps.sh (already installed)
#   NATTER_SKIP_WEB=1 scripts/test.sh         skip the web client tests
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ART="$ROOT/tests/artifacts"
T0=$(date +%s)
PY=/usr/bin/python3   # Debian's python3: it has python3-websockets/-jwt/-pytest

stamp() { echo "== $(date +%H:%M:%S) (+$(( $(date +%s) - T0 ))s) $*"; }

if [ "${NATTER_SKIP_DEPS:-0}" != 1 ]; then
  stamp "install-deps"
  bash scripts/install-deps.sh || { echo "test.sh: install-deps.sh failed" >&2; echo "summary: 0 passed, 1 failed"; exit 1; }
fi

stamp "build (ASan+UBSan) into build-asan/"
if ! BUILD=$(bash scripts/build.sh --sanitize build-asan | tail -n 1); then
  echo "test.sh: build failed" >&2
  echo "summary: 0 passed, 1 failed"
  exit 1
fi
mkdir -p "$ART"
rm -f "$ART/ctest.xml" "$ART/pytest.xml"

# Sanitizers: any report is a failure. detect_leaks stays on (LeakSanitizer at exit).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-}"

stamp "ctest (unit + C integration)"
(cd "$BUILD" && timeout 600 ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" \
   --timeout 300 --output-junit "$ART/ctest.xml")
CTEST_RC=$?

stamp "pytest tests/integration (NATTER_BIN=$BUILD/natter-node)"
PYTEST_TIMEOUT=()
if $PY -c 'import pytest_timeout' 2>/dev/null; then PYTEST_TIMEOUT=(--timeout=300); fi
# shellcheck disable=SC2086
NATTER_BIN="$BUILD/natter-node" timeout 900 $PY -m pytest -q -p no:cacheprovider \
  "${PYTEST_TIMEOUT[@]}" --junitxml="$ART/pytest.xml" ${PYTEST_ARGS:-} tests/integration
PYTEST_RC=$?

# Web client: unit tests of clients/js/natter.js and the demo page in chromium (its own runner).
WEB_RC=0
rm -f "$ART"/web-*.xml
if [ -f tests/browser/run.sh ] && [ "${NATTER_SKIP_WEB:-0}" != 1 ]; then
  stamp "tests/browser/run.sh (web client unit + browser)"
  NATTER_BIN="$BUILD/natter-node" timeout 900 bash tests/browser/run.sh
  WEB_RC=$?
fi

# Other suites, each its own script that exits non-zero on failure; counted as one test
# each in the summary (their own output lists their cases). NATTER_SKIP_<NAME>=1 skips one.
SUITES_FILE="$ART/suites.txt"
: > "$SUITES_FILE"
run_suite() {  # name, timeout (s), command...
  local name=$1 limit=$2; shift 2
  local skip="NATTER_SKIP_$(echo "$name" | tr 'a-z-' 'A-Z_')"
  if [ "${!skip:-0}" = 1 ]; then echo "$name skipped" >> "$SUITES_FILE"; return; fi
  stamp "$name: $*"
  NATTER_BIN="$BUILD/natter-node" timeout "$limit" "$@"
  local rc=$?
  echo "$name $rc" >> "$SUITES_FILE"
}
[ -f tests/conformance/run.sh ] && run_suite conformance 600 bash tests/conformance/run.sh
# The JavaScript client as a package: npm pack, install into a scratch project, tsc --strict,
# run the example under Node with ws against a real node.
[ -f clients/js/test/package.sh ] && run_suite client-package 600 bash clients/js/test/package.sh
# The AWS SDK v3 ApiGatewayManagementApi client against a node (SigV4, stage, exceptions).
[ -f tests/aws/run.sh ] && run_suite aws-sdk 600 bash tests/aws/run.sh
# Fuzzing: each libFuzzer target a few seconds from its seed corpus (the long runs are
# tests/fuzz/run.sh --long N, not part of the suite).
[ -f tests/fuzz/run.sh ] && run_suite fuzz-smoke 900 bash tests/fuzz/run.sh --build --smoke 5 -j 2
[ -f helm/test.sh ] && run_suite helm 600 bash helm/test.sh
[ -f tests/cluster/run.sh ] && run_suite cluster 900 bash tests/cluster/run.sh
[ -f docker/test.sh ] && run_suite docker 1200 bash docker/test.sh
# Benchmarks are not tests: this short smoke run only keeps the tools from rotting.
[ -f bench/run.sh ] && run_suite bench-smoke 900 bash bench/run.sh --smoke --out "$ART/bench-smoke"
SUITES_RC=0
grep -qv -E " (0|skipped)$" "$SUITES_FILE" && SUITES_RC=1

# Summary from the JUnit reports.
SUMMARY=$($PY - "$ART/ctest.xml" "$ART/pytest.xml" "$ART/web-*.xml" "$CTEST_RC" "$PYTEST_RC" "$WEB_RC" "$SUITES_FILE" <<'EOF'
import glob, sys, xml.etree.ElementTree as ET
def count(pattern):
    paths = sorted(glob.glob(pattern))
    if not paths:
        return None
    roots = []
    for path in paths:
        try:
            roots.append(ET.parse(path).getroot())
        except Exception:
            return None
    return count_roots(roots)
def count_roots(roots):
    # One verdict per test name (pytest writes a second <testcase> for a teardown error).
    verdict = {}
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    for tc in (tc for root in roots for tc in root.iter("testcase")):
        kinds = {c.tag for c in tc}
        name = (tc.get("classname", "") + "::" + tc.get("name", "")).strip(":")
        if "failure" in kinds or "error" in kinds:
            v = "failed"
        elif "skipped" in kinds or tc.get("status") in ("notrun", "disabled"):
            v = "skipped"
        else:
            v = "passed"
        if rank[v] >= rank[verdict.get(name, "passed")]:
            verdict[name] = v
    vs = list(verdict.values())
    failed = [n for n, v in verdict.items() if v == "failed"]
    return vs.count("passed"), len(failed), vs.count("skipped"), failed
tp = tf = ts = 0
lines = []
for label, path, rc in (("ctest", sys.argv[1], int(sys.argv[4])),
                        ("pytest", sys.argv[2], int(sys.argv[5])),
                        ("web", sys.argv[3], int(sys.argv[6]))):
    c = count(path)
    if c is None and label == "web" and rc == 0:
        continue  # not run
    if c is None:
        lines.append(f"  {label:7s} no report (exit {rc})")
        tf += 1 if rc != 0 else 0
        continue
    p, f, s, failed = c
    if rc != 0 and f == 0:
        f = 1; failed.append(f"{label} exited {rc}")
    tp += p; tf += f; ts += s
    lines.append(f"  {label:7s} {p} passed, {f} failed, {s} skipped (exit {rc})")
    for n in failed:
        lines.append(f"      FAILED {n}")
for line in open(sys.argv[7]).read().split("\n"):
    if not line.strip():
        continue
    name, rc = line.split()
    if rc == "skipped":
        ts += 1
        lines.append(f"  {name:7s} skipped")
    elif rc == "0":
        tp += 1
        lines.append(f"  {name:7s} passed")
    else:
        tf += 1
        lines.append(f"  {name:7s} FAILED (exit {rc})")
print("\n".join(lines))
print(f"summary: {tp} passed, {tf} failed" + (f", {ts} skipped" if ts else ""))
EOF
)

echo
stamp "done"
echo "$SUMMARY" | sed '$d'
echo "  time    $(( $(date +%s) - T0 ))s"
echo "$SUMMARY" | tail -n 1
if [ "$CTEST_RC" -ne 0 ] || [ "$PYTEST_RC" -ne 0 ] || [ "$WEB_RC" -ne 0 ] || [ "$SUITES_RC" -ne 0 ]; then
  exit 1
fi
exit 0

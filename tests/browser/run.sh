#!/usr/bin/env bash
# Tests of the web client: installs the npm devDependencies (npm ci in clients/js/ and in
# tests/browser/), runs the unit tests of clients/js/natter.js (Node's test runner, fake
# server) and the browser end-to-end tests of the demo page web/ (playwright-core driving
# Debian's chromium against a 2-node cluster behind haproxy). The package test of the
# client (npm pack, tsc --strict, Node + ws) is clients/js/test/package.sh.
# Exits non-zero if anything fails. JUnit reports go to tests/artifacts/web-*.xml,
# screenshots to tests/artifacts/browser-*.png.
#
#   tests/browser/run.sh              unit + browser tests
#   tests/browser/run.sh --unit       unit tests only (no cluster, no browser)
#   NATTER_BIN=path/natter-node       binary under test (default: build/natter-node, built
#                                     with scripts/build.sh when missing)
#   NATTER_SKIP_NPM=1                 skip `npm ci` (node_modules already installed)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ART="$ROOT/tests/artifacts"
mkdir -p "$ART"

UNIT_ONLY=0
case "${1:-}" in
  --unit) UNIT_ONLY=1 ;;
  "") ;;
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

say() { echo "== browser/run.sh: $*"; }
die() { echo "browser/run.sh: $*" >&2; echo "web: 0 passed, 1 failed"; exit 1; }

command -v node >/dev/null || die "node not found (scripts/install-deps.sh)"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || die "Node.js >= 20 needed, found $(node --version)"

if [ "${NATTER_SKIP_NPM:-0}" != 1 ]; then
  for dir in clients/js tests/browser; do
    say "npm ci ($dir/)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in $dir failed"
  done
fi

# Node's junit reporter (Node >= 20.13) gives the lead's summary something to count.
REPORT=(--test-reporter=spec --test-reporter-destination=stdout)
junit() { REPORT_J=(--test-reporter=junit "--test-reporter-destination=$ART/$1"); }

# Node 20 has a global WebSocket only behind a flag: turn it on so the test of the library
# with the built-in WebSocket runs too (it uses the `ws` package otherwise).
NODE_FLAGS=()
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null &&
   node --experimental-websocket -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
  NODE_FLAGS=(--experimental-websocket --no-warnings)
fi

rc=0
say "unit tests: clients/js/test/*.test.mjs"
junit web-unit.xml
(cd clients/js && timeout 300 node "${NODE_FLAGS[@]}" --test "${REPORT[@]}" "${REPORT_J[@]}" test/*.test.mjs) || rc=1

if [ "$UNIT_ONLY" = 0 ]; then
  if [ -z "${NATTER_BIN:-}" ]; then
    NATTER_BIN="$ROOT/build/natter-node"
    if [ ! -x "$NATTER_BIN" ]; then
      say "building natter-node (scripts/build.sh build)"
      NATTER_BIN="$(bash scripts/build.sh build | tail -n 1)/natter-node" || die "build failed"
    fi
  fi
  [ -x "$NATTER_BIN" ] || die "$NATTER_BIN not found or not executable"
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || die "chromium not found: run scripts/install-deps.sh"
  for tool in nats-server redis-server haproxy; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
  done
  say "browser tests: tests/browser/*.test.mjs (NATTER_BIN=$NATTER_BIN)"
  junit web-browser.xml
  NATTER_BIN="$NATTER_BIN" timeout 600 node --test "${REPORT[@]}" "${REPORT_J[@]}" \
    tests/browser/*.test.mjs || rc=1
fi

if [ "$rc" = 0 ]; then say "ok"; else say "FAILED"; fi
exit "$rc"

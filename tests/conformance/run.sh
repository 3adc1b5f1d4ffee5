#!/usr/bin/env bash
# tests/conformance/run.sh — RFC 6455 conformance suite (Autobahn case groups 1-7, 12).
#
#   tests/conformance/run.sh [conformance.py options, e.g. --cases 6.4,7 --verbose]
#
# Starts its own natter-node (NATTER_BIN, else the newest of build-hard/, build-asan/,
# build/) on free loopback ports, runs every case with raw sockets, stops the node by PID
# and prints the table. Exits non-zero when a case failed or the node exited uncleanly.
# The node's log goes to tests/artifacts/conformance/node.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${NATTER_BIN:-}
if [ -z "$BIN" ]; then
  BIN=$(ls -t "$ROOT"/build-hard/natter-node "$ROOT"/build-asan/natter-node "$ROOT"/build/natter-node \
        2>/dev/null | head -1 || true)
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "run.sh: natter-node not found (set NATTER_BIN or build first)" >&2; exit 1; }
mkdir -p "$ROOT/tests/artifacts/conformance"
export CONFORMANCE_LOG=$ROOT/tests/artifacts/conformance/node.log
: > "$CONFORMANCE_LOG"
echo "run.sh: $BIN"
rc=0
/usr/bin/python3 "$ROOT/tests/conformance/conformance.py" --bin "$BIN" "$@" || rc=$?
if grep -qE "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$CONFORMANCE_LOG"; then
  echo "run.sh: sanitizer report in $CONFORMANCE_LOG" >&2
  rc=1
fi
exit $rc

#!/usr/bin/env bash
# Package test of natter-client: packs clients/js with `npm pack`, checks that the tarball
# holds only the client, its declarations, README and LICENSE, installs it into a scratch
# project in a temporary directory (pinned typescript, ws, @types/* from
# test/package/package-lock.json), compiles test/package/example.ts with `tsc --strict`,
# starts a standalone natter node on free loopback ports and runs the compiled example
# under Node with the ws package against it (connect, join, send, receive back, history).
# Fails when any step fails.
#
#   bash clients/js/test/package.sh
#   NATTER_BIN=path/natter-node   binary to test against (default: build/natter-node)
#   KEEP=1                        keep the temporary directory (its path is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=$PWD
ROOT=$(cd ../.. && pwd)
NATTER_BIN=${NATTER_BIN:-$ROOT/build/natter-node}
say() { echo "== package.sh: $*"; }
die() { echo "package.sh: FAILED: $*" >&2; exit 1; }

[ -x "$NATTER_BIN" ] || die "$NATTER_BIN not found (build it, or set NATTER_BIN)"
command -v node >/dev/null || die "node not found (scripts/install-deps.sh)"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || die "Node.js >= 20 needed"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/natter-package.XXXXXX")
NODE_PID=
cleanup() {
  if [ -n "$NODE_PID" ]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

say "npm pack"
npm pack --pack-destination "$TMP" --json --loglevel=error >"$TMP/pack.json" || die "npm pack"
TARBALL=$TMP/$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1])).at(0).filename' "$TMP/pack.json")
[ -f "$TARBALL" ] || die "no tarball"
FILES=$(tar -tzf "$TARBALL" | sort | tr '\n' ' ')
EXPECTED="package/LICENSE package/README.md package/natter.d.ts package/natter.js package/package.json "
[ "$FILES" = "$EXPECTED" ] || die "tarball holds [$FILES], expected [$EXPECTED]"
say "tarball $(basename "$TARBALL"): $FILES"

say "scratch project: npm ci, then the tarball"
APP=$TMP/app
mkdir "$APP"
cp "$PKG"/test/package/{package.json,package-lock.json,tsconfig.json,example.ts} "$APP"/
(cd "$APP" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in the scratch project"
(cd "$APP" && npm install --no-save --no-audit --no-fund --loglevel=error "$TARBALL") || die "installing the tarball"
[ -f "$APP/node_modules/natter-client/natter.d.ts" ] || die "natter-client not installed from the tarball"

say "tsc --strict ($(cd "$APP" && npx --no-install tsc --version))"
(cd "$APP" && npx --no-install tsc -p tsconfig.json --strict) || die "tsc --strict"

say "starting $NATTER_BIN (standalone, dev tokens)"
read -r PORT API_PORT < <(node -e '
  const net = require("net");
  const a = net.createServer().listen(0, "127.0.0.1", () => {
    const b = net.createServer().listen(0, "127.0.0.1", () => {
      console.log(a.address().port, b.address().port); a.close(); b.close();
    });
  });')
"$NATTER_BIN" --listen "127.0.0.1:$PORT" --api-listen "127.0.0.1:$API_PORT" --node-id pkg-node \
  --jwt-secret "package-test-secret-$$-0123456789abcdef" --dev-tokens on --drain-grace 0 \
  >"$TMP/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 100); do
  if node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
      "http://127.0.0.1:$PORT/readyz"; then
    break
  fi
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$TMP/node.log" >&2; die "natter-node exited"; }
  sleep 0.1
done

say "node dist/example.js (Node $(node --version), ws)"
if ! (cd "$APP" && NATTER_HTTP="http://127.0.0.1:$PORT" timeout 60 node dist/example.js); then
  tail -n 30 "$TMP/node.log" >&2
  die "the example failed against the node"
fi
if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$TMP/node.log" >&2; then
  die "sanitizer report in the node's log"
fi
say "ok"

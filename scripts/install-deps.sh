#!/usr/bin/env bash
# Installs every Debian package natter needs to build, test and run a local cluster.
# Idempotent and non-interactive; run as root (or with sudo) on Debian bookworm.
#   scripts/install-deps.sh               everything (build, tests, local cluster)
#   scripts/install-deps.sh --build-only  only what scripts/build.sh needs (image build stage)
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake pkg-config ca-certificates
  libuv1-dev libwslay-dev libnats-dev libprotobuf-c-dev protobuf-c-compiler
  libhiredis-dev libcmocka-dev libjwt-dev libjansson-dev libhttp-parser-dev libssl-dev zlib1g-dev
  libcurl4-openssl-dev
)
PKGS=(
  "${BUILD_PKGS[@]}" git curl openssl
  nats-server redis-server redis-sentinel haproxy
  python3-websockets python3-pytest python3-pytest-timeout python3-jwt iproute2 procps
  chromium
  prometheus
)
# openssl (the command) makes the test certificates and CAs of the TLS and HTTPS tests.
# prometheus ships promtool, which checks /metrics in tests/integration/test_ops.py.
# Node.js >= 20 and npm run the web client's tests (tests/browser/run.sh), its package
# test (clients/js/test/package.sh) and the AWS SDK v3 suite (tests/aws/run.sh); npm
# packages come pinned from each package-lock.json. The machine image ships them; only
# where they are missing fall back to Debian's packages.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)

case "${1:-}" in
  --build-only) PKGS=("${BUILD_PKGS[@]}") ;;
  "") ;;
  *) echo "install-deps: unknown option $1" >&2; exit 2 ;;
esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these services on install; natter's scripts and tests start their own
# instances on free ports, so the packaged daemons are not needed.
for svc in redis-server redis-sentinel nats-server haproxy prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done
echo "install-deps: ok"

#!/usr/bin/env bash
# Installs every Debian package natter needs to build, test and run a local cluster.
# Idempotent and non-interactive; run as root (or with sudo) on Debian bookworm.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl
  libuv1-dev libwslay-dev libnats-dev libprotobuf-c-dev protobuf-c-compiler
  libhiredis-dev libcmocka-dev libjwt-dev libjansson-dev libhttp-parser-dev libssl-dev zlib1g-dev
  nats-server redis-server haproxy
  python3-websockets iproute2 procps
)

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
for svc in redis-server nats-server haproxy; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done
echo "install-deps: ok"

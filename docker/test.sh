#!/usr/bin/env bash
# Builds the natter image and runs the compose cluster for real with podman (no Docker
# engine needed), then proves it: a WebSocket client connects through haproxy, a message
# crosses nodes, a node container is stopped (SIGTERM drain as PID 1), presence works
# through Redis Sentinel and survives a kill of the Redis primary (the sentinels promote
# the replica), and everything is torn down. Exits non-zero on any failure; prints
# timings and the image size.
#
#   docker/test.sh [--keep] [--port N]
#
#   --keep     leave the cluster running at the end (tear down: docker/test.sh --down)
#   --down     only tear down a cluster left by --keep
#   --port N   published port on 127.0.0.1 (default: a free one)
#
# Needs root on Debian bookworm (installs podman, buildah, runc, podman-compose, debootstrap
# from Debian). No container registry is used: the debian:bookworm-slim base is made with
# debootstrap from the Debian mirror in the apt sources and cached in $NATTER_DOCKER_STATE
# (default /var/tmp/natter-docker), so re-runs skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${NATTER_DOCKER_STATE:-/var/tmp/natter-docker}
PROJECT=natter-test
PORT=""
KEEP=0
DOWN_ONLY=0
PY=/usr/bin/python3
T0=$(date +%s)

while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=1 ;;
    --down) DOWN_ONLY=1 ;;
    --port) PORT="$2"; shift ;;
    --port=*) PORT="${1#*=}" ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker/test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

stamp() { echo "== $(date +%H:%M:%S) (+$(( $(date +%s) - T0 ))s) $*"; }
die() { echo "docker/test.sh: FAIL: $*" >&2; echo "docker/test.sh: 0 passed, 1 failed"; exit 1; }

# ---------------------------------------------------------------- tools -------------
PKGS=(podman buildah runc podman-compose debootstrap netavark aardvark-dns iptables
      python3-websockets python3-jwt)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  stamp "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman here: runc (crun is not used), the open-files/process limits containers may have,
# and netavark for the compose network (name resolution between services by aardvark-dns).
mkdir -p "$STATE"
cat >"$STATE/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
CONF
export CONTAINERS_CONF="$STATE/containers.conf"
COMPOSE=(podman-compose -p "$PROJECT" -f "$ROOT/docker/compose.yml")

down() {
  "${COMPOSE[@]}" down -v >"$STATE/compose-down.log" 2>&1 || true
  # podman-compose 1.0 leaves the project network behind
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}
if [ "$DOWN_ONLY" = 1 ]; then down; echo "down"; exit 0; fi

# ---------------------------------------------------------------- base image --------
# debian:bookworm-slim from debootstrap (minbase), slimmed the way the official image is
# (no docs, man pages or locales; apt lists removed), imported under that name.
mirror() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ]; then
    awk '/^URIs:/ {print $2; exit}' "$f"
  elif [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" && $0 ~ / bookworm / {print $2; exit}' /etc/apt/sources.list
  fi
}
make_base() {
  local tar="$STATE/bookworm-slim.tar"
  if [ ! -s "$tar" ]; then
    local m rootfs="$STATE/rootfs"
    m=$(mirror); m=${m:-http://deb.debian.org/debian}
    stamp "debootstrap --variant=minbase bookworm from $m (cached in $tar afterwards)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$m" >"$STATE/debootstrap.log" 2>&1 ||
      { tail -n 30 "$STATE/debootstrap.log" >&2; die "debootstrap failed"; }
    mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d" "$rootfs/etc/apt/apt.conf.d"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      rm -f "$rootfs/etc/apt/sources.list"
      cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
    fi
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
      "$rootfs"/var/cache/debconf/*-old
    tar --numeric-owner -C "$rootfs" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$rootfs"
  fi
  if ! podman image exists docker.io/library/debian:bookworm-slim; then
    stamp "importing $tar as debian:bookworm-slim"
    podman import --change 'CMD ["bash"]' "$tar" docker.io/library/debian:bookworm-slim >/dev/null
  fi
}

# ---------------------------------------------------------------- images ------------
cleanup() {
  local rc=$?
  [ "$KEEP" = 2 ] && return
  if [ "$KEEP" = 1 ] && [ "$rc" = 0 ]; then
    echo "cluster left running on http://127.0.0.1:$PORT/ (tear down: docker/test.sh --down)"
    return
  fi
  if [ "$rc" != 0 ] && [ -n "${UP:-}" ]; then
    echo "--- container logs (last lines) ---" >&2
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
      echo "--- $c" >&2; podman logs --tail 15 "$c" 2>&1 | sed 's/^/    /' >&2
    done
  fi
  stamp "tearing down"
  down
  local left
  left=$(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" -q | wc -l)
  [ "$left" = 0 ] || echo "docker/test.sh: $left container(s) left behind" >&2
}
trap cleanup EXIT

make_base
BUILD=(podman build --pull=never --network=host --format docker)
stamp "building natter image (docker/Dockerfile)"
tb=$(date +%s)
"${BUILD[@]}" --ignorefile docker/Dockerfile.dockerignore -f docker/Dockerfile \
  -t localhost/natter:latest . >"$STATE/build-natter.log" 2>&1 ||
  { tail -n 40 "$STATE/build-natter.log" >&2; die "image build failed ($STATE/build-natter.log)"; }
stamp "building natter-infra image (docker/infra.Dockerfile: nats-server, redis, haproxy)"
"${BUILD[@]}" -f docker/infra.Dockerfile -t localhost/natter-infra:latest docker \
  >"$STATE/build-infra.log" 2>&1 ||
  { tail -n 40 "$STATE/build-infra.log" >&2; die "infra image build failed"; }
BUILD_S=$(( $(date +%s) - tb ))
# Old dangling layers (the build stage's cache of earlier runs) would pile up run after run.
podman image prune -f --filter until=24h >/dev/null 2>&1 || true
SIZE=$(podman image inspect localhost/natter:latest --format '{{.Size}}')
BASE_SIZE=$(podman image inspect docker.io/library/debian:bookworm-slim --format '{{.Size}}')

# The runtime stage must hold every library the binary needs, and run as non-root.
missing_libs=$(podman run --rm --pull=never --entrypoint ldd localhost/natter:latest \
  /usr/local/bin/natter-node | grep 'not found' || true)
[ -z "$missing_libs" ] || die "runtime image lacks libraries: $missing_libs"
uid=$(podman run --rm --pull=never --entrypoint id localhost/natter:latest -u 2>/dev/null)
[ "$uid" != 0 ] || die "image runs as root"
# Captured first: with pipefail, `grep -q` closing the pipe early could fail podman.
help_text=$(podman run --rm --pull=never localhost/natter:latest --help 2>&1 || true)
grep -q -- --drain-grace <<<"$help_text" ||
  die "natter-node --help in the image does not work: $(head -c 400 <<<"$help_text")"

# ---------------------------------------------------------------- compose up --------
export NATTER_IMAGE=localhost/natter:latest NATTER_INFRA_IMAGE=localhost/natter-infra:latest
if [ -z "$PORT" ]; then
  PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
export NATTER_PORT=$PORT NATTER_DRAIN_GRACE=5 NATTER_DEV_TOKENS=off
export NATTER_JWT_SECRET="test-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
export NATTER_ADMIN_TOKEN="admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  die "127.0.0.1:$PORT is in use (choose another with --port)"
fi
down   # leftovers of an interrupted run
stamp "compose up (project $PROJECT, http://127.0.0.1:$PORT/)"
UP=1
tu=$(date +%s.%N)
"${COMPOSE[@]}" up -d >"$STATE/compose-up.log" 2>&1 ||
  { tail -n 40 "$STATE/compose-up.log" >&2; die "podman-compose up failed"; }
ready=0
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  if $PY -c 'import sys,urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)' \
      "http://127.0.0.1:$PORT/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || die "haproxy on 127.0.0.1:$PORT never answered /readyz 200 within 60 s"
UP_S=$(awk -v a="$tu" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
stamp "cluster answers /readyz through haproxy ${UP_S}s after compose up"
# Only 127.0.0.1 is published.
pub=$(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Ports}}' | tr ',' '\n' | grep -- '->' || true)
if echo "$pub" | grep -v '^ *127\.0\.0\.1:' | grep -q .; then die "a port is published beyond 127.0.0.1: $pub"; fi

# ---------------------------------------------------------------- checks ------------
stamp "smoke test through haproxy"
$PY docker/smoke_test.py "$PORT" "$PROJECT" || die "smoke test failed"

if [ "$KEEP" != 1 ]; then
  stamp "tearing down"
  down
  UP=""
  KEEP=2   # already down: the exit trap has nothing left to do
fi
echo
echo "image localhost/natter:latest: $((SIZE / 1000000)) MB (base debian:bookworm-slim $((BASE_SIZE / 1000000)) MB, natter layers $(((SIZE - BASE_SIZE) / 1000000)) MB); images built in ${BUILD_S}s"
echo "compose up -> ready through haproxy: ${UP_S}s; total $(( $(date +%s) - T0 ))s"
echo "docker/test.sh: 1 passed, 0 failed"

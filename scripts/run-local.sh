#!/usr/bin/env bash
# Runs a whole natter cluster on this machine, in the foreground: nats-server, redis-server,
# N natter-nodes and haproxy in front of them, all on 127.0.0.1: the public port (page,
# WebSockets) and the internal API port (HTTP API, metrics; admin token), rendered from
# the one haproxy template (scripts/haproxy.cfg.in). Ctrl-C / SIGTERM stops everything it
# started (by PID). Logs go to .run/.
#
#   scripts/run-local.sh [--port 8080] [--api-port PORT+1] [--nodes 2] [--no-install]
#                        [--no-build] [--bin PATH] [--run-dir DIR]
#
# The nodes run with a development JWT secret and the dev token endpoint
# (GET /dev/token?user=..&tenant=..) that the demo page uses; never expose this setup.
set -euo pipefail
ORIG_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN="$ROOT/.run"
HOST=127.0.0.1

PORT=${NATTER_PORT:-8080}
API_PORT=${NATTER_API_PORT:-}
NODES=2
INSTALL=1
BUILD=1
BIN=""

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift ;;
    --port=*) PORT="${1#*=}" ;;
    --api-port) API_PORT="$2"; shift ;;
    --api-port=*) API_PORT="${1#*=}" ;;
    --nodes) NODES="$2"; shift ;;
    --nodes=*) NODES="${1#*=}" ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --bin) BIN="$2"; BUILD=0; shift ;;
    --bin=*) BIN="${1#*=}"; BUILD=0 ;;
    --run-dir) RUN="$2"; shift ;;
    --run-dir=*) RUN="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run-local: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$ORIG_PWD/$1" ;; esac; }
RUN=$(abspath "$RUN")
[ -z "$BIN" ] || BIN=$(abspath "$BIN")
case "$PORT" in ''|*[!0-9]*) echo "run-local: --port must be a number" >&2; exit 2 ;; esac
API_PORT=${API_PORT:-$((PORT + 1))}
case "$API_PORT" in ''|*[!0-9]*) echo "run-local: --api-port must be a number" >&2; exit 2 ;; esac
[ "$API_PORT" != "$PORT" ] || { echo "run-local: --api-port must differ from --port" >&2; exit 2; }
case "$NODES" in ''|*[!0-9]*|0) echo "run-local: --nodes must be a positive number" >&2; exit 2 ;; esac

log() { echo "run-local: $*"; }

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
if port_busy "$PORT"; then
  echo "run-local: port $PORT on $HOST is already in use; choose another with --port" >&2
  exit 1
fi
if port_busy "$API_PORT"; then
  echo "run-local: port $API_PORT on $HOST is already in use; choose another with --api-port" >&2
  exit 1
fi
mkdir -p "$RUN"

if [ "$INSTALL" = 1 ]; then
  bash scripts/install-deps.sh
fi
if [ "$BUILD" = 1 ]; then
  log "building (build/; output in $RUN/build.log)"
  if ! out=$(bash scripts/build.sh build 2>"$RUN/build.log"); then
    tail -n 40 "$RUN/build.log" >&2
    echo "run-local: build failed (see $RUN/build.log)" >&2
    exit 1
  fi
  BIN="$(echo "$out" | tail -n 1)/natter-node"
fi
BIN=${BIN:-$ROOT/build/natter-node}
[ -x "$BIN" ] || { echo "run-local: $BIN not found or not executable" >&2; exit 1; }
for tool in nats-server redis-server haproxy; do
  command -v "$tool" >/dev/null || { echo "run-local: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# Free loopback ports for everything behind haproxy: nats, nats monitoring, redis, and
# two per node (--listen, --api-listen).
read -r -a PORTS <<<"$("$PY" - $((3 + 2 * NODES)) "$PORT" "$API_PORT" <<'EOF'
import socket, sys
n, avoid = int(sys.argv[1]), {int(sys.argv[2]), int(sys.argv[3])}
socks, ports = [], []
while len(ports) < n:
    s = socket.socket(); s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    if p not in avoid:
        ports.append(p)
    socks.append(s)
print(" ".join(map(str, ports)))
EOF
)"
NATS_PORT=${PORTS[0]}; NATS_MPORT=${PORTS[1]}; REDIS_PORT=${PORTS[2]}

rm -rf "$RUN"/nats.log "$RUN"/redis.log "$RUN"/haproxy.log "$RUN"/node-*.log "$RUN/pids" "$RUN/haproxy.cfg" "$RUN/jetstream"
SECRET=${NATTER_JWT_SECRET:-dev-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}
ADMIN=${NATTER_ADMIN_TOKEN:-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}

PIDS=()
NAMES=()
stopping=0
# Sends SIGTERM to the processes at the given indexes of PIDS, waits up to 20 s for them
# (nodes drain), then SIGKILLs what is left.
stop_pids() {
  local i pid
  for i in "$@"; do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  for _ in $(seq 200); do
    local any=0
    for i in "$@"; do kill -0 "${PIDS[$i]}" 2>/dev/null && any=1; done
    [ "$any" = 0 ] && break
    sleep 0.1
  done
  for i in "$@"; do
    pid=${PIDS[$i]}
    if kill -0 "$pid" 2>/dev/null; then
      log "${NAMES[$i]} (pid $pid) did not stop; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  echo
  log "stopping"
  # haproxy first, then every node at once (each drains), then redis and nats.
  local i
  for i in "${!NAMES[@]}"; do [ "${NAMES[$i]}" = haproxy ] && stop_pids "$i"; done
  local nodes=()
  for i in "${!NAMES[@]}"; do case "${NAMES[$i]}" in node-*) nodes+=("$i") ;; esac; done
  [ "${#nodes[@]}" -eq 0 ] || stop_pids "${nodes[@]}"
  for i in "${!NAMES[@]}"; do case "${NAMES[$i]}" in redis|nats) stop_pids "$i" ;; esac; done
  log "stopped; logs in $RUN"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # name logfile cmd...
  local name=$1 logf=$2
  shift 2
  "$@" >"$logf" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  echo "$name $!" >>"$RUN/pids"
}

wait_http() { # url what
  local i
  for i in $(seq 300); do
    if "$PY" -c 'import sys,urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)' "$1" 2>/dev/null; then
      return 0
    fi
    check_alive
    sleep 0.1
  done
  echo "run-local: $2 not ready after 30 s ($1)" >&2
  exit 1
}

check_alive() {
  local i
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "run-local: ${NAMES[$i]} (pid ${PIDS[$i]}) exited; its log:" >&2
      tail -n 30 "$RUN/${NAMES[$i]}.log" >&2 || true
      exit 1
    fi
  done
}

log "nats-server on $HOST:$NATS_PORT (monitoring $NATS_MPORT)"
start nats "$RUN/nats.log" nats-server -a "$HOST" -p "$NATS_PORT" -m "$NATS_MPORT" \
  -js -sd "$RUN/jetstream"
log "redis-server on $HOST:$REDIS_PORT"
start redis "$RUN/redis.log" redis-server --port "$REDIS_PORT" --bind "$HOST" --save '' \
  --appendonly no
wait_http "http://$HOST:$NATS_MPORT/healthz" nats-server
for _ in $(seq 100); do port_busy "$REDIS_PORT" && break; check_alive; sleep 0.1; done

HA_NODES=()
for ((n = 1; n <= NODES; n++)); do
  lp=${PORTS[$((1 + 2 * n))]}
  ap=${PORTS[$((2 + 2 * n))]}
  log "node-$n on $HOST:$lp (api $ap)"
  start "node-$n" "$RUN/node-$n.log" "$BIN" \
    --listen "$HOST:$lp" --api-listen "$HOST:$ap" --node-id "node-$n" \
    --nats "nats://$HOST:$NATS_PORT" --redis "redis://$HOST:$REDIS_PORT" \
    --jwt-secret "$SECRET" --admin-token "$ADMIN" --dev-tokens on --trust-proxy on \
    --drain-grace 2
  HA_NODES+=("node-$n=$HOST:$lp,$HOST:$ap")
done
for ((n = 1; n <= NODES; n++)); do
  wait_http "http://$HOST:${PORTS[$((1 + 2 * n))]}/readyz" "node-$n"
done

# haproxy needs two descriptors per proxied connection; stay under the hard limit.
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -gt 100400 ]; then MAXCONN=50000; else MAXCONN=$(( (HARD - 400) / 2 )); fi
sh scripts/haproxy-cfg.sh --public "$HOST:$PORT" --api "$HOST:$API_PORT" --maxconn "$MAXCONN" \
  "${HA_NODES[@]}" >"$RUN/haproxy.cfg"
haproxy -c -q -f "$RUN/haproxy.cfg" || { echo "run-local: bad haproxy config $RUN/haproxy.cfg" >&2; exit 1; }
log "haproxy on $HOST:$PORT (API on $HOST:$API_PORT)"
start haproxy "$RUN/haproxy.log" haproxy -db -f "$RUN/haproxy.cfg"
wait_http "http://$HOST:$PORT/healthz" haproxy
wait_http "http://$HOST:$API_PORT/healthz" "haproxy (API)"

cat <<EOF

  natter is running: $NODES node(s) behind haproxy.

  Demo page:      http://$HOST:$PORT/
  WebSocket:      ws://$HOST:$PORT/ws?token=<JWT>
  Dev token:      curl 'http://$HOST:$PORT/dev/token?user=alice&tenant=demo'
  JWT secret:     $SECRET   (HS256; claims sub, tenant, exp)
  Admin token:    $ADMIN
  HTTP API:       curl -H 'Authorization: Bearer $ADMIN' \\
                    -d '{"message":"hello"}' http://$HOST:$API_PORT/v1/tenants/demo/rooms/lobby/messages
                  (the internal port; the public one answers /v1/ with 404)
  Metrics:        http://$HOST:$API_PORT/metrics (one node per request)
  NATS:           nats://$HOST:$NATS_PORT (monitoring http://$HOST:$NATS_MPORT/)
  Redis:          redis://$HOST:$REDIS_PORT
  Logs:           $RUN/

  Ctrl-C stops everything.
EOF

# Stay in the foreground until something dies or we are told to stop.
while true; do
  if ! wait -n "${PIDS[@]}" 2>/dev/null; then :; fi
  [ "$stopping" = 1 ] && break
  check_alive
done

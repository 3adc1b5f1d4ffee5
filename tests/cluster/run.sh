#!/usr/bin/env bash
# Multi-host tests: natter across "hosts" that are Linux network namespaces, joined by veth
# pairs to a bridge that lives in a namespace of its own. The root namespace gets no
# address and no route; all traffic stays on 10.77.0.0/24 inside the namespaces.
#
#   hosts:  nats1 nats2 nats3 (clustered NATS, JetStream; the chaos suite adds a
#           redis-sentinel on each)  redis redis2 (the chaos suite: primary and replica)
#           node1 node2 node3 (natter-node)  lb (haproxy)  client (the tests and their
#           WebSocket clients)
#
# Scenarios (tests/cluster/cluster_test.py): kill -9 a node, partition a node, stop a NATS
# server, SIGTERM (drain) a node, history (R3 JetStream stream: resume with `since` after
# kill -9, stream leader's NATS server stopped) — each with traffic and assertions. Then
# the chaos suite (tests/cluster/chaos_test.py, Redis behind Sentinel, message-level
# accounting): node-kill9 nats-leader-kill9 nats-rolling redis-failover node-drain.
# Everything is bounded in time; namespaces and processes are always removed (trap), by
# name and by PID.
#
#   tests/cluster/run.sh [-k NAME[,NAME...]] [--no-chaos | --chaos-only] [--long]
#     -k            only these scenarios (of either file)
#     --no-chaos    cluster_test.py only;  --chaos-only  chaos_test.py only
#     --long        the chaos suite's long form (more members and traffic; bound 900 s)
#   NATTER_BIN=path/to/natter-node tests/cluster/run.sh   (default: builds build/)
#
# Needs root (ip netns). Exits non-zero when a scenario fails; prints a summary line.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=/usr/bin/python3
T0=$(date +%s)
SUBNET=10.77.0
PREFIX="ntc$$"          # namespace names: unique per run
BR="$PREFIX-br"
ART="$ROOT/tests/artifacts/cluster"
HOSTS=(nats1:11 nats2:12 nats3:13 redis:20 redis2:21 node1:31 node2:32 node3:33 lb:40 client:50)
CHAOS_NAMES=" node-kill9 nats-leader-kill9 nats-rolling redis-failover node-drain "
RUN_CLUSTER=1 RUN_CHAOS=1 LONG=() K_CLUSTER="" K_CHAOS="" K_SET=0
while [ $# -gt 0 ]; do
  case "$1" in
    -k) K_SET=1
        for n in ${2//,/ }; do
          if [[ "$CHAOS_NAMES" == *" $n "* ]]; then K_CHAOS+="${K_CHAOS:+,}$n"; else K_CLUSTER+="${K_CLUSTER:+,}$n"; fi
        done
        shift ;;
    --no-chaos) RUN_CHAOS=0 ;;
    --chaos-only) RUN_CLUSTER=0 ;;
    --long) LONG=(--long) ;;
    *) echo "tests/cluster/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$K_SET" = 1 ]; then
  [ -n "$K_CLUSTER" ] || RUN_CLUSTER=0
  [ -n "$K_CHAOS" ] || RUN_CHAOS=0
fi

stamp() { echo "== $(date +%H:%M:%S) (+$(( $(date +%s) - T0 ))s) $*"; }
[ "$(id -u)" -eq 0 ] || { echo "tests/cluster/run.sh: needs root (network namespaces)" >&2; exit 1; }

if [ "${NATTER_SKIP_DEPS:-0}" != 1 ]; then
  bash scripts/install-deps.sh >/dev/null || { echo "install-deps failed" >&2; exit 1; }
fi
for tool in ip nats-server redis-server haproxy; do
  command -v "$tool" >/dev/null || { echo "tests/cluster: $tool missing" >&2; exit 1; }
done
BIN=${NATTER_BIN:-}
if [ -z "$BIN" ]; then
  stamp "building natter-node (scripts/build.sh build)"
  BIN="$(bash scripts/build.sh build | tail -n 1)/natter-node" || { echo "build failed" >&2; exit 1; }
fi
BIN=$(readlink -f "$BIN")
[ -x "$BIN" ] || { echo "tests/cluster: no natter-node at $BIN" >&2; exit 1; }

rm -rf "$ART"; mkdir -p "$ART"
PIDFILE="$ART/pids"
: >"$PIDFILE"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Processes first (deleting a namespace does not stop what runs in it), by PID only.
  if [ -s "$PIDFILE" ]; then
    # Each line: PID and its start time, so a PID the system reused is never hit.
    while read -r pid start; do
      now=$(awk '{sub(/.*\) /, ""); print $20}' "/proc/$pid/stat" 2>/dev/null) || continue
      [ "$now" = "$start" ] && kill -KILL "$pid" 2>/dev/null || true
    done <"$PIDFILE"
  fi
  for h in "${HOSTS[@]}"; do ip netns del "$PREFIX-${h%%:*}" 2>/dev/null || true; done
  ip netns del "$BR" 2>/dev/null || true
  local left
  left=$(ip netns list | grep -c "^$PREFIX-" || true)
  [ "$left" = 0 ] || echo "tests/cluster: $left namespace(s) of this run left behind" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the network -------
stamp "creating namespaces $PREFIX-* (bridge in $BR, subnet $SUBNET.0/24 inside them only)"
ip netns add "$BR"
ip -n "$BR" link set lo up
ip -n "$BR" link add br0 type bridge
ip -n "$BR" link set br0 up
for h in "${HOSTS[@]}"; do
  name=${h%%:*} octet=${h##*:} ns="$PREFIX-${h%%:*}"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # Both ends are created inside namespaces: nothing ever appears in the root namespace.
  ip -n "$BR" link add "v-$name" type veth peer name eth0 netns "$ns"
  ip -n "$BR" link set "v-$name" master br0 up
  ip -n "$ns" addr add "$SUBNET.$octet/24" dev eth0
  ip -n "$ns" link set eth0 up
done
# Sanity: none of it is visible in the root namespace.
if ip -4 addr show | grep -q "$SUBNET\."; then
  echo "tests/cluster: the root namespace has a $SUBNET address" >&2; exit 1
fi

# ---------------------------------------------------------------- scenarios ---------
export NTC_PREFIX=$PREFIX NTC_SUBNET=$SUBNET NTC_BIN=$BIN NTC_ART=$ART NTC_PIDFILE=$PIDFILE
rc=0
suite() {  # file, bound (s), -k list, more arguments
  local file=$1 bound=$2 k=$3 r
  shift 3
  stamp "scenarios (tests/cluster/$file, logs in $ART)"
  timeout "$bound" ip netns exec "$PREFIX-client" "$PY" "tests/cluster/$file" \
    ${k:+-k "$k"} "$@"
  r=$?
  if [ "$r" = 124 ]; then
    echo "tests/cluster: $file exceeded the $bound s bound"
    echo "summary: 0 passed, 1 failed"
  fi
  [ "$r" = 0 ] || rc=1
}
[ "$RUN_CLUSTER" = 1 ] && suite cluster_test.py 330 "$K_CLUSTER"
[ "$RUN_CHAOS" = 1 ] && suite chaos_test.py "$([ ${#LONG[@]} = 0 ] && echo 330 || echo 900)" \
  "$K_CHAOS" "${LONG[@]}"
exit "$rc"

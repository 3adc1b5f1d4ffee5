#!/bin/sh
# haproxy-cfg.sh: renders the haproxy configuration for natter nodes from the one template
# (scripts/haproxy.cfg.in) to standard output. Used by docker/compose.yml (inside the
# haproxy container), scripts/run-local.sh, tests/browser/cluster.mjs and
# tests/cluster/cluster_test.py. POSIX sh and awk only.
#
#   haproxy-cfg.sh --public ADDR:PORT --api ADDR:PORT [--maxconn N] [--inter 2s]
#                  [--stats ADDR:PORT] [--dns] [--template FILE] NODE...
#   haproxy-cfg.sh --help
#
#   NODE         NAME=WS_HOST:PORT,API_HOST:PORT — one natter node: its WebSocket listener
#                (--listen) and its API listener (--api-listen)
#   --public     bind of the public frontend (/ws, page, static files, /healthz, /readyz)
#   --api        bind of the internal API frontend (/v1/..., /@connections/..., /metrics);
#                keep it on 127.0.0.1 or an internal network
#   --maxconn    global maxconn (default: haproxy derives it from the open-files limit)
#   --inter      health-check interval (default 2s)
#   --stats      also serve haproxy's statistics page on ADDR:PORT at /stats
#   --dns        resolve node host names at run time through the DNS of /etc/resolv.conf
#                (containers: a restarted node that comes back with another address is
#                found again)
set -eu
TEMPLATE="$(dirname "$0")/haproxy.cfg.in"
PUBLIC="" API="" MAXCONN="" INTER=2s STATS="" DNS=0 WS="" APIS=""
die() { echo "haproxy-cfg: $*" >&2; exit 2; }
nl='
'
while [ $# -gt 0 ]; do
  case "$1" in
    --public) PUBLIC="$2"; shift ;;
    --api) API="$2"; shift ;;
    --maxconn) MAXCONN="$2"; shift ;;
    --inter) INTER="$2"; shift ;;
    --stats) STATS="$2"; shift ;;
    --dns) DNS=1 ;;
    --template) TEMPLATE="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *=*,*)
      name=${1%%=*} rest=${1#*=}
      WS="$WS    server $name ${rest%%,*} check$nl"
      APIS="$APIS    server $name ${rest#*,} check$nl"
      ;;
    *) die "node \"$1\" is not NAME=WS_HOST:PORT,API_HOST:PORT" ;;
  esac
  shift
done
[ -n "$PUBLIC" ] || die "--public is required"
[ -n "$API" ] || die "--api is required"
[ -n "$WS" ] || die "no node given"
[ -r "$TEMPLATE" ] || die "cannot read $TEMPLATE"
[ "$PUBLIC" != "$API" ] || die "--public and --api must differ"

MAXCONN_BLOCK="" RESOLVERS_BLOCK="" SERVER_OPTS="" STATS_BLOCK=""
[ -z "$MAXCONN" ] || MAXCONN_BLOCK="    maxconn $MAXCONN"
if [ "$DNS" = 1 ]; then
  RESOLVERS_BLOCK="${nl}resolvers dns${nl}    parse-resolv-conf${nl}    hold valid 5s${nl}    hold nx 5s"
  SERVER_OPTS=" resolvers dns init-addr last,libc,none"
fi
[ -z "$STATS" ] || STATS_BLOCK="${nl}listen stats${nl}    bind $STATS${nl}    stats enable${nl}    stats uri /stats${nl}"

export MAXCONN_BLOCK RESOLVERS_BLOCK SERVER_OPTS STATS_BLOCK PUBLIC API INTER WS APIS
awk '
  function block(v) { sub(/\n$/, "", v); if (v != "") print v }
  /^@MAXCONN@$/ { block(ENVIRON["MAXCONN_BLOCK"]); next }
  /^@RESOLVERS@$/ { block(ENVIRON["RESOLVERS_BLOCK"]); next }
  /^@STATS@$/ { block(ENVIRON["STATS_BLOCK"]); next }
  /^@WS_SERVERS@$/ { block(ENVIRON["WS"]); next }
  /^@API_SERVERS@$/ { block(ENVIRON["APIS"]); next }
  {
    gsub(/@PUBLIC_BIND@/, ENVIRON["PUBLIC"]); gsub(/@API_BIND@/, ENVIRON["API"])
    gsub(/@INTER@/, ENVIRON["INTER"]); gsub(/@SERVER_OPTS@/, ENVIRON["SERVER_OPTS"])
    print
  }
' "$TEMPLATE"

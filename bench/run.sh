#!/usr/bin/env bash
# bench/run.sh — natter vs a Socket.IO 4.8 cluster, same load generator, same run.
#
#   bench/run.sh [--smoke] [--runs N] [--scenarios 1,2,3,4,5,6,7] [--no-socketio] [--out DIR]
#   bench/run.sh --history-compare [--smoke] [--runs N]
#   bench/run.sh --streams-compare K [--smoke] [--runs N] [--scenarios 2]
#
# Builds a Release tree (build-bench/), starts nats-server, redis-server, natter nodes and
# the Socket.IO cluster (bench/peers/socketio: 2 Node processes + @socket.io/redis-adapter)
# on loopback ports from NB_PORT_BASE (default 27000), runs the scenarios, stops every
# process it started (by PID) and prints a table (medians over --runs). Results: one JSON
# line per run in DIR/results.jsonl (default: bench/out/<timestamp>/), logs beside it.
#   1  fan-out at a fixed rate: 2,000 connections, 20 rooms of 100 spread over 2 nodes,
#      20 publishers, 500 msg/s (50k deliveries/s), 100-byte payloads
#   2  the same, closed loop (window per publisher): deliveries/s at saturation
#   3  memory: 15,000 idle connections joined to rooms on one node: RSS per connection
#      (each sends a browser's User-Agent; NB_USER_AGENT= for none);
#      and a node at --max-connections must answer 503 and keep serving the rest
#   4  connect rate: authenticated connections/s one node accepts
#   5  scale-out shape (natter): 3 nodes, a room's members over 1, 2, 3 nodes, same load:
#      NATS bytes each node receives, CPU per delivery
#   6  reconnect storm (natter, history on: nats-server -js): 3 nodes, 20,000 connections in
#      rooms of 100, the third node holding 15,000 of them, 200 msg/s from publishers on the
#      other two; the third node is killed (kill -9), then in a second run drained
#      (SIGTERM): its clients reconnect at once to the survivors and rejoin with since.
#      back_s, lost / duplicated messages, survivors' CPU and RSS, Redis and NATS load,
#      503s from survivors
#   7  100,000 connections (natter, history on): 7 nodes, 100,000 distinct users in rooms of
#      100 plus 2 rooms of 10,000 (NB_BIG_SIZE), generator over 6 processes and 7 source
#      addresses; nodes at --ping-interval 5 for the idle-CPU window (NB_PING), then 1,000
#      msg/s, then the seventh node killed: connect time, RSS, Redis, NATS, CPU, fan-out
#      p99, the storm figures of 6
#   8  fill one room (natter): 2 nodes, NB_FILL (10,000) distinct users joining one room
#      with 1,000 handshakes in flight: connect time, presence frames received, Redis
#      commands per join and redis-server CPU, node CPU (NB_PERF=1: perf record of node 1)
#   Scenarios 6, 7 and 8 are not in the default list (a full 7 takes several minutes); the
#   smoke runs them small.
# --smoke: a few seconds per scenario with small numbers (CI); Socket.IO is included when
# its npm dependencies are installed (full runs install them with npm ci).
# --history-compare: scenarios 1 and 2 for natter only, each run once with --history off
# and once with --history on (nats-server with JetStream, -js -sd <tmpdir>, file storage;
# the nodes create the stream NATTER_ROOMS), side by side with the ratio on/off.
# --streams-compare K: scenarios 1 and 2 (default: 2, saturation) for natter only with
# --history on, each run once with --history-streams 1 (the stream NATTER_ROOMS) and once
# with --history-streams K (NATTER_ROOMS_0..K-1), side by side with the ratio K / 1.
# Scenarios 1 and 2 are repeated (up to NB_MAX_REPEATS=3 times) when the hypervisor stole
# more than NB_MAX_STEAL=0.02 cores (/proc/stat steal) while they measured; see gen_fanout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
RUNS=1
SCEN=""
SIO=auto
OUT=""
HCOMPARE=0
SCOMPARE=0
STREAMS=1
BUILD=${NB_BUILD_DIR:-$ROOT/build-bench}
PB=${NB_PORT_BASE:-27000}
SECRET=bench-secret-0123456789abcdef0123456789  # HS256: at least 32 bytes
MAX_STEAL=${NB_MAX_STEAL:-0.02}   # cores; see gen_fanout
MAX_REPEATS=${NB_MAX_REPEATS:-3}
# Scenario 3's connections send what a browser sends (both systems store it per
# connection, or not); NB_USER_AGENT= (empty) sends no User-Agent at all.
UA=${NB_USER_AGENT-Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36}
UA_ARGS=()
[ -z "$UA" ] || UA_ARGS=(--user-agent "$UA")

while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --runs) RUNS=$2; shift ;;
    --scenarios) SCEN=$2; shift ;;
    --no-socketio) SIO=no ;;
    --history-compare) HCOMPARE=1 ;;
    --streams-compare) SCOMPARE=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ $HCOMPARE = 1 ]; then
  SIO=no
  case "$SCEN" in 1,2,3,4,5|1,2,3,4,5,6,7) SCEN="1,2" ;; esac
  case ",$SCEN," in *,[34567],*) echo "run.sh: --history-compare runs scenarios 1 and 2 only" >&2; exit 2 ;; esac
fi
if [ "$SCOMPARE" != 0 ]; then
  case "$SCOMPARE" in [2-9]|1[0-6]) ;; *) echo "run.sh: --streams-compare takes 2..16" >&2; exit 2 ;; esac
  [ $HCOMPARE = 0 ] || { echo "run.sh: --streams-compare and --history-compare are separate runs" >&2; exit 2; }
  SIO=no
  [ -n "$SCEN" ] || SCEN="2"
  case ",$SCEN," in *,[345678],*) echo "run.sh: --streams-compare runs scenarios 1 and 2 only" >&2; exit 2 ;; esac
fi
[ -n "$SCEN" ] || { [ $SMOKE = 1 ] && SCEN="1,2,3,4,5,6,7,8" || SCEN="1,2,3,4,5"; }
[ -n "$OUT" ] || OUT=$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)$([ $SMOKE = 0 ] || echo -smoke)
mkdir -p "$OUT"
RES=$OUT/results.jsonl
: > "$RES"
has() { case ",$SCEN," in *",$1,"*) return 0 ;; esac; return 1; }
log() { echo "run.sh: $*" >&2; }

# ---------------------------------------------------------------- sizes ----------
if [ $SMOKE = 1 ]; then
  C1=200; R1=4; P1=4; RATE1=200; WARM=1; DUR=2; DRAIN=1; WIN=8
  C3=300; R3=3; LIMIT=50; C4=300; C4SIO=200
  # 6: conns, rooms (one publisher each), msg/s, generator processes, warm-up, measure, drain
  C6=${NB_S6_CONNS:-800}; R6=${NB_S6_ROOMS:-8}; RATE6=80; PROCS6=1; W6=1; D6=2; DR6=8
  # 7: the same plus big rooms x members, --idle seconds
  C8=${NB_FILL:-400}
  C7=${NB_S7_CONNS:-1400}; R7=${NB_S7_ROOMS:-10}; BIG7=${NB_BIG_ROOMS:-2}; BIGS7=${NB_BIG_SIZE:-200}; RATE7=120; PROCS7=2; IDLE7=3; W7=1; D7=2; DR7=8
else
  C1=2000; R1=20; P1=20; RATE1=500; WARM=3; DUR=10; DRAIN=2; WIN=16
  C3=15000; R3=150; LIMIT=500; C4=15000; C4SIO=5000
  C6=${NB_S6_CONNS:-20000}; R6=${NB_S6_ROOMS:-200}; RATE6=200; PROCS6=2; W6=2; D6=5; DR6=12
  C8=${NB_FILL:-10000}
  C7=${NB_S7_CONNS:-100000}; R7=${NB_S7_ROOMS:-800}; BIG7=${NB_BIG_ROOMS:-2}; BIGS7=${NB_BIG_SIZE:-10000}; RATE7=1000; PROCS7=6; IDLE7=12; W7=3; D7=10; DR7=14
fi
PING7=${NB_PING:-5}
[ "$BIG7" != 0 ] || BIGS7=0  # NB_BIG_ROOMS=0: rooms of 100 only

# ---------------------------------------------------------------- ports ----------
NATS_PORT=$((PB + 222)); NATS_MON=$((PB + 822))
REDIS_NT=$((PB + 379)); REDIS_SIO=$((PB + 380))
WS=() API=()
for i in 1 2 3 4 5 6 7; do WS+=($((PB + 100 + i))); API+=($((PB + 200 + i))); done
SIOP=($((PB + 301)) $((PB + 302)))
LIMIT_WS=$((PB + 111)); LIMIT_API=$((PB + 211))

port_busy() { ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .; }
for p in $NATS_PORT $NATS_MON $REDIS_NT $REDIS_SIO "${WS[@]}" "${API[@]}" "${SIOP[@]}" $LIMIT_WS $LIMIT_API; do
  if port_busy "$p"; then
    echo "run.sh: port $p is in use; set NB_PORT_BASE to a free range" >&2
    exit 1
  fi
done

# ---------------------------------------------------------------- processes ------
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  PIDS=()
  [ -z "${JS_DIR:-}" ] || rm -rf "$JS_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, logs to $OUT/NAME.log, sets $LASTPID
start() {
  local name=$1; shift
  "$@" > "$OUT/$name.log" 2>&1 &
  LASTPID=$!
  PIDS+=("$LASTPID")
}

stop() { # stop PID...: SIGTERM, wait (bounded), SIGKILL
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
  done
}

wait_port() { # wait_port PORT [seconds]
  local t=$(( ${2:-10} * 20 ))
  for _ in $(seq $t); do port_busy "$1" && return 0; sleep 0.05; done
  echo "run.sh: nothing listens on port $1" >&2
  return 1
}

ticks() { # utime+stime (clock ticks) summed over PIDs
  local s=0 pid v
  for pid in "$@"; do
    v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    s=$((s + v))
  done
  echo $s
}
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }   # all CPUs, steal excluded
sys_steal() { awk '/^cpu /{print $9}' /proc/stat; }  # time the hypervisor ran someone else
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build ----------
# NB_SKIP_BUILD=1: use the binaries already in $BUILD (e.g. an older tree built there, for
# a before/after comparison).
if [ "${NB_SKIP_BUILD:-0}" != 1 ]; then
  log "building Release natter-node and natter-bench in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNATTER_TESTS=OFF > "$OUT/build.log" 2>&1
  cmake --build "$BUILD" -j "$(nproc)" --target natter-node natter-bench >> "$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log" >&2; exit 1; }
fi
NODE_BIN=$BUILD/natter-node
GEN=$BUILD/bench/natter-bench
# Publishers send as fast as the window allows: the per-connection flood limit (a
# protection, not part of the fan-out path being measured) is switched off.
# History (JetStream) is off: the reference keeps none, and the live fan-out path is what
# is compared. --drain-grace: SIGTERM stops a node without the default 10 s drain.
# With --history-compare, scenarios 1 and 2 also run with --history on (HISTORY=on).
NODE_FLAGS=(--drain-grace 0.2)
NODE_HELP=$("$NODE_BIN" --help 2>/dev/null || true)
case "$NODE_HELP" in *--rate-limit*) NODE_FLAGS+=(--rate-limit 0) ;; esac
HAS_HISTORY=0
case "$NODE_HELP" in *--history*) HAS_HISTORY=1 ;; esac
if [ $HCOMPARE = 1 ] && [ $HAS_HISTORY = 0 ]; then
  echo "run.sh: --history-compare: this natter-node has no --history flag" >&2; exit 1
fi
HISTORY=off
history_flags() { # the node's history flags for the current $HISTORY
  [ $HAS_HISTORY = 1 ] || return 0
  if [ "$HISTORY" = on ]; then
    echo --history on --history-storage file --history-replicas 1
    [ "$STREAMS" = 1 ] || echo --history-streams "$STREAMS"
  else
    echo --history off
  fi
}
log "natter-node flags: ${NODE_FLAGS[*]}"

SIODIR=$ROOT/bench/peers/socketio
if [ "$SIO" = auto ]; then
  SIO=no
  if command -v node > /dev/null; then
    if [ -d "$SIODIR/node_modules/socket.io" ]; then
      SIO=yes
    elif [ $SMOKE = 0 ] && command -v npm > /dev/null; then
      log "installing the Socket.IO peer (npm ci)"
      (cd "$SIODIR" && npm ci --no-audit --no-fund > "$OUT/npm.log" 2>&1) && SIO=yes ||
        log "npm ci failed: Socket.IO is skipped (see $OUT/npm.log)"
    fi
  fi
  [ $SIO = yes ] || log "Socket.IO peer not available: natter only"
fi

# ---------------------------------------------------------------- infrastructure --
JS_DIR=""
if [ $HCOMPARE = 1 ] || [ "$SCOMPARE" != 0 ] || has 6 || has 7; then
  # JetStream for the history-on runs; the history-off runs use the same server (a
  # JetStream-enabled server costs nothing on subjects no stream captures).
  JS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/natter-bench-js.XXXXXX")
  start nats nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON" -js -sd "$JS_DIR"
else
  start nats nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON"
fi
NATS_PID=$LASTPID
start redis-natter redis-server --bind 127.0.0.1 --port "$REDIS_NT" --save "" --appendonly no
REDIS_NT_PID=$LASTPID
wait_port "$NATS_PORT"; wait_port "$REDIS_NT"
REDIS_SIO_PID=""
if [ $SIO = yes ]; then
  start redis-sio redis-server --bind 127.0.0.1 --port "$REDIS_SIO" --save "" --appendonly no
  REDIS_SIO_PID=$LASTPID
  wait_port "$REDIS_SIO"
fi

NODE_PIDS=()
start_nodes() { # start_nodes N [extra natter-node flags]: cluster nodes 1..N
  local n=$1; shift
  NODE_PIDS=()
  local i
  for i in $(seq 0 $((n - 1))); do
    start "natter-n$((i + 1))" "$NODE_BIN" --listen "127.0.0.1:${WS[$i]}" --api-listen "127.0.0.1:${API[$i]}" \
      --jwt-secret "$SECRET" --nats "nats://127.0.0.1:$NATS_PORT" --redis "redis://127.0.0.1:$REDIS_NT" \
      --node-id "bench-n$((i + 1))" --log-level warn "${NODE_FLAGS[@]+"${NODE_FLAGS[@]}"}" \
      $(history_flags) "$@"
    NODE_PIDS+=("$LASTPID")
  done
  for i in $(seq 0 $((n - 1))); do wait_port "${WS[$i]}"; done
  sleep 0.3
}
node_metric_sum() { # node_metric_sum NAME: a counter summed over the running nodes
  local i t=0 v
  for i in $(seq 0 $((${#NODE_PIDS[@]} - 1))); do
    v=$(python3 "$ROOT/bench/report.py" metric "http://127.0.0.1:${API[$i]}" "$1" 2>/dev/null || echo 0)
    t=$(awk "BEGIN{print $t + $v}")
  done
  echo "$t"
}
history_storing() { # every running node stores into the stream (bounded wait)
  local _ n
  for _ in $(seq 50); do
    n=$(node_metric_sum natter_history_storing)
    [ "${n%.*}" = "${#NODE_PIDS[@]}" ] && return 0
    sleep 0.1
  done
  return 1
}
stop_nodes() { [ ${#NODE_PIDS[@]} = 0 ] || stop "${NODE_PIDS[@]}"; NODE_PIDS=(); }

SIO_PIDS=()
start_sio() { # start_sio N
  SIO_PIDS=()
  local i
  for i in $(seq 0 $(($1 - 1))); do
    (cd "$SIODIR" && PORT=${SIOP[$i]} REDIS_URL=redis://127.0.0.1:$REDIS_SIO JWT_SECRET=$SECRET \
      exec node server.js) > "$OUT/sio-$((i + 1)).log" 2>&1 &
    SIO_PIDS+=("$!"); PIDS+=("$!")
  done
  for i in $(seq 0 $(($1 - 1))); do wait_port "${SIOP[$i]}" 20; done
  sleep 0.3
}
stop_sio() { [ ${#SIO_PIDS[@]} = 0 ] || stop "${SIO_PIDS[@]}"; SIO_PIDS=(); }

urls() { # urls natter|socketio N
  local out="" i
  for i in $(seq 0 $(($2 - 1))); do
    if [ "$1" = natter ]; then out+="ws://127.0.0.1:${WS[$i]}/ws,"
    else out+="ws://127.0.0.1:${SIOP[$i]}/,"; fi
  done
  echo "${out%,}"
}

# gen_measured TAG SYSTEM "SERVER PIDS" "BUS PIDS" EXTRA_KV -- generator args
# Runs the generator; samples CPU over its measure window; appends the annotated result.
gen_measured() {
  local tag=$1 system=$2 srv=$3 bus=$4 extra=$5; shift 6
  local ready=$OUT/ready.$tag gen_out=$OUT/gen.$tag.json
  rm -f "$ready"
  "$GEN" --ready-file "$ready" --warmup "$WARM" --duration "$DUR" --drain "$DRAIN" "$@" \
    > "$gen_out" 2> "$OUT/gen.$tag.log" &
  local gpid=$!
  PIDS+=("$gpid")
  while [ ! -e "$ready" ] && kill -0 "$gpid" 2>/dev/null; do sleep 0.05; done
  local s0 b0 a0 y0 t0 s1 b1 a1 y1 t1
  if [ -e "$ready" ]; then
    sleep "$(awk "BEGIN{print 0.1 + $WARM}")"
    s0=$(ticks $srv); b0=$(ticks $bus); y0=$(sys_busy); t0=$(sys_steal)
    sleep "$DUR"
    s1=$(ticks $srv); b1=$(ticks $bus); y1=$(sys_busy); t1=$(sys_steal)
  else
    s0=0; s1=0; b0=0; b1=0; y0=0; y1=0; t0=0; t1=0
  fi
  wait "$gpid" || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$gpid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  local srv_s bus_s all_s steal_s
  srv_s=$(awk "BEGIN{print ($s1 - $s0) / $HZ}")
  steal_s=$(awk "BEGIN{print ($t1 - $t0) / $HZ}")
  bus_s=$(awk "BEGIN{print ($b1 - $b0) / $HZ}")
  all_s=$(awk "BEGIN{print ($y1 - $y0) / $HZ}")
  python3 "$ROOT/bench/report.py" annotate "$RES" "$gen_out" scenario="${tag%%.*}" system="$system" \
    run="$RUN" node_cpu_s="$srv_s" bus_cpu_s="$bus_s" machine_cpu_s="$all_s" steal_s="$steal_s" $extra > /dev/null
  python3 - "$RES" "$DUR" <<'EOF'
import json, sys
path, dur = sys.argv[1], float(sys.argv[2])
rows = [json.loads(l) for l in open(path) if l.strip()]
r = rows[-1]
srv = r.get("node_cpu_s", 0) + r.get("bus_cpu_s", 0)
r["server_cores"] = srv / dur
d = r.get("delivered", 0)
r["cpu_us_per_delivery"] = srv / d * 1e6 if d else None
r["bg_cores"] = max(0.0, (r.get("machine_cpu_s", 0) - srv - r.get("gen_cpu_s", 0)) / dur)
r["steal_cores"] = r.get("steal_s", 0) / dur
rows[-1] = r
open(path, "w").write("".join(json.dumps(x, sort_keys=True) + "\n" for x in rows))
EOF
  tail -1 "$RES" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("run.sh: %-14s %-8s deliveries/s %s ratio %s p50 %s p99 %s ms server cores %.2f bg %.2f steal %.3f" % (sys.argv[1], r.get("system"), r.get("deliveries_per_s"), r.get("delivery_ratio"), r.get("lat_ms",{}).get("p50"), r.get("lat_ms",{}).get("p99"), r.get("server_cores",0), r.get("bg_cores",0), r.get("steal_cores",0)), file=sys.stderr)' "$tag"
}

# gen_fanout: gen_measured, repeated (at most MAX_REPEATS times) while the hypervisor
# stole more than MAX_STEAL cores during the measure window. This VM shares its host:
# a stolen stretch stalls every process at once and turns a 1 ms p99 into 30-700 ms for
# whichever system happened to run then. Repeated runs stay in results.jsonl, marked
# "discarded", and the table counts them; the same rule applies to both systems.
# A history-on run (system natter-history) also records what the stream stored during it
# and what went out live-only (must be 0): proof that it measured history on.
gen_fanout() {
  local tries=0 st0 lo0 st1 lo1
  while :; do
    if [ "$2" = natter-history ] || [ "$2" = natter-streams ]; then
      st0=$(node_metric_sum natter_history_stored_total)
      lo0=$(node_metric_sum natter_history_live_only_total)
    fi
    gen_measured "$@"
    if [ "$2" = natter-history ] || [ "$2" = natter-streams ]; then
      st1=$(node_metric_sum natter_history_stored_total)
      lo1=$(node_metric_sum natter_history_live_only_total)
      python3 "$ROOT/bench/report.py" mark "$RES" "history_stored=$((${st1%.*} - ${st0%.*}))" \
        "history_live_only=$((${lo1%.*} - ${lo0%.*}))"
      log "$1: $((${st1%.*} - ${st0%.*})) messages stored by the stream, $((${lo1%.*} - ${lo0%.*})) live-only"
    fi
    tries=$((tries + 1))
    if awk "BEGIN{exit !($(python3 "$ROOT/bench/report.py" last "$RES" steal_cores) > $MAX_STEAL)}" &&
       [ $tries -le "$MAX_REPEATS" ]; then
      log "$1: the hypervisor stole more than $MAX_STEAL cores; run repeated"
      python3 "$ROOT/bench/report.py" mark "$RES" discarded=steal
      continue
    fi
    return 0
  done
}

FAN_ARGS=(--conns "$C1" --rooms "$R1" --publishers "$P1" --payload 100 --quiet)

# ---------------------------------------------------------------- scenarios ------
scenario_fanout() { # scenario_fanout s1|s2 RATE-ARGS...
  local sc=$1; shift
  if [ "$SCOMPARE" != 0 ]; then # history on, one stream then K streams
    local k sys
    HISTORY=on
    for k in 1 "$SCOMPARE"; do
      STREAMS=$k
      sys=natter-history; [ "$k" = 1 ] || sys=natter-streams
      stop_nodes; start_nodes 2
      history_storing || log "$sc: --history-streams $k, but the nodes do not report natter_history_storing 1"
      gen_fanout "$sc.$sys.$RUN" "$sys" "${NODE_PIDS[*]}" "$NATS_PID $REDIS_NT_PID" \
        "history=on" -- --url "$(urls natter 2)" "${FAN_ARGS[@]}" "$@"
      python3 "$ROOT/bench/report.py" mark "$RES" "streams=$k"
      stop_nodes
    done
    HISTORY=off; STREAMS=1
    return
  fi
  stop_nodes; start_nodes 2
  gen_fanout "$sc.natter.$RUN" natter "${NODE_PIDS[*]}" "$NATS_PID $REDIS_NT_PID" "history=$HISTORY" -- \
    --url "$(urls natter 2)" "${FAN_ARGS[@]}" "$@"
  stop_nodes
  if [ $HCOMPARE = 1 ]; then
    HISTORY=on
    start_nodes 2
    if ! history_storing; then
      log "$sc: history on, but the nodes do not report natter_history_storing 1"
    fi
    gen_fanout "$sc.natter-history.$RUN" natter-history "${NODE_PIDS[*]}" "$NATS_PID $REDIS_NT_PID" \
      "history=on" -- --url "$(urls natter 2)" "${FAN_ARGS[@]}" "$@"
    stop_nodes
    HISTORY=off
  fi
  if [ $SIO = yes ]; then
    start_sio 2
    gen_fanout "$sc.sio.$RUN" socketio "${SIO_PIDS[*]}" "$REDIS_SIO_PID" "" -- \
      --proto socketio --url "$(urls socketio 2)" "${FAN_ARGS[@]}" "$@"
    stop_sio
  fi
}

# memory_run SYSTEM PID URL PATTERN: PATTERN steady (256 handshakes in flight, joinRoom
# after welcome) or storm (natter: 1,000 in flight, joinRoom right after the upgrade, as
# browsers do). RSS is read before, at its peak while connecting (every 0.1 s) and 5 s
# after the last connection joined.
memory_run() {
  local system=$1 pid=$2 url=$3 pattern=$4 tag=s3.$1.$4.$RUN
  local ready=$OUT/ready.$tag before after peak r
  local pargs=(--concurrency 256)
  [ "$pattern" = storm ] && pargs=(--concurrency 1000 --eager-join)
  sleep 1
  before=$(rss_kb "$pid")
  peak=$before
  rm -f "$ready"
  "$GEN" --proto "$system" --url "$url" --conns "$C3" --rooms "$R3" --src-addrs 4 \
    "${pargs[@]}" --connect-timeout 120 --warmup 0 --duration 7 --drain 0 --quiet \
    "${UA_ARGS[@]+"${UA_ARGS[@]}"}" --ready-file "$ready" > "$OUT/gen.$tag.json" 2> "$OUT/gen.$tag.log" &
  local gpid=$!
  PIDS+=("$gpid")
  while [ ! -e "$ready" ] && kill -0 "$gpid" 2>/dev/null; do
    r=$(rss_kb "$pid"); [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.1
  done
  sleep 5
  after=$(rss_kb "$pid")
  [ "$after" -gt "$peak" ] && peak=$after
  wait "$gpid" || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$gpid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  local ready_n
  ready_n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("ready",0))' "$OUT/gen.$tag.json" 2>/dev/null || echo 0)
  local per=0
  [ "$ready_n" -gt 0 ] && per=$(( (after - before) * 1024 / ready_n ))
  local peak_per=0
  [ "$ready_n" -gt 0 ] && peak_per=$(( (peak - before) * 1024 / ready_n ))
  python3 "$ROOT/bench/report.py" annotate "$RES" "$OUT/gen.$tag.json" scenario=s3 system="$system" \
    run="$RUN" pattern="$pattern" rss_before_kb="$before" rss_after_kb="$after" rss_peak_kb="$peak" \
    rss_per_conn="$per" rss_peak_per_conn="$peak_per" > /dev/null
  log "s3 $system $pattern: $ready_n idle joined connections, RSS $before -> peak $peak -> $after KiB, $per bytes/connection ($peak_per at the peak)"
}

scenario_memory() {
  stop_nodes; start_nodes 1
  memory_run natter "${NODE_PIDS[0]}" "$(urls natter 1)" steady
  stop_nodes; start_nodes 1
  memory_run natter "${NODE_PIDS[0]}" "$(urls natter 1)" storm
  stop_nodes
  if [ $SIO = yes ]; then
    start_sio 1
    memory_run socketio "${SIO_PIDS[0]}" "$(urls socketio 1)" steady
    stop_sio
  fi
  # the node at its own limit: 503 past --max-connections, the others keep being served
  [ "$RUN" = 1 ] || return 0
  start natter-limit "$NODE_BIN" --listen "127.0.0.1:$LIMIT_WS" --api-listen "127.0.0.1:$LIMIT_API" \
    --jwt-secret "$SECRET" --max-connections "$LIMIT" --log-level warn "${NODE_FLAGS[@]+"${NODE_FLAGS[@]}"}" \
    $(history_flags)
  local lpid=$LASTPID
  wait_port "$LIMIT_WS"
  local tried=$((LIMIT + LIMIT / 5)) tag=s3limit.natter.$RUN
  "$GEN" --url "ws://127.0.0.1:$LIMIT_WS/ws" --conns "$tried" --rooms 5 --publishers 5 --rate 50 \
    --warmup 1 --duration 2 --drain 3 --quiet > "$OUT/gen.$tag.json" 2> "$OUT/gen.$tag.log" || true
  local alive=0 health=0
  kill -0 "$lpid" 2>/dev/null && alive=1
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
    "http://127.0.0.1:$LIMIT_API/healthz" 2> /dev/null && health=1
  local ok
  ok=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); lim = int(sys.argv[2]); tried = int(sys.argv[3])
ok = r.get("ready") == lim and r.get("rejected_503") == tried - lim and r.get("delivery_ratio") == 1.0
print(1 if ok and sys.argv[4] == "1" else 0)' "$OUT/gen.$tag.json" "$LIMIT" "$tried" "$health" 2>/dev/null || echo 0)
  python3 "$ROOT/bench/report.py" annotate "$RES" "$OUT/gen.$tag.json" scenario=s3limit system=natter \
    run="$RUN" max_connections="$LIMIT" node_alive="$alive" healthz="$health" limit_ok="$ok" > /dev/null
  log "s3 limit: --max-connections $LIMIT, $tried tried: ok=$ok"
  stop "$lpid"
}

scenario_connect() {
  stop_nodes; start_nodes 1
  local tag=s4.natter.$RUN
  "$GEN" --url "$(urls natter 1)" --conns "$C4" --src-addrs 4 --concurrency 512 --connect-timeout 120 \
    --warmup 0 --duration 0.5 --drain 0 --quiet > "$OUT/gen.$tag.json" 2> "$OUT/gen.$tag.log" || true
  python3 "$ROOT/bench/report.py" annotate "$RES" "$OUT/gen.$tag.json" scenario=s4 system=natter run="$RUN" > /dev/null
  log "s4 natter: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("ready"), "ready,", r.get("connect_rate"), "conn/s")' "$OUT/gen.$tag.json" 2>/dev/null)"
  stop_nodes
  if [ $SIO = yes ]; then
    start_sio 1
    tag=s4.sio.$RUN
    "$GEN" --proto socketio --url "$(urls socketio 1)" --conns "$C4SIO" --src-addrs 4 --concurrency 512 \
      --connect-timeout 120 --warmup 0 --duration 0.5 --drain 0 --quiet \
      > "$OUT/gen.$tag.json" 2> "$OUT/gen.$tag.log" || true
    python3 "$ROOT/bench/report.py" annotate "$RES" "$OUT/gen.$tag.json" scenario=s4 system=socketio run="$RUN" > /dev/null
    log "s4 socketio: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("ready"), "ready,", r.get("connect_rate"), "conn/s")' "$OUT/gen.$tag.json" 2>/dev/null)"
    stop_sio
  fi
}

scenario_scaleout() {
  stop_nodes; start_nodes 3
  local k
  for k in 1 2 3; do
    local tag=s5.k$k.$RUN ready=$OUT/ready.s5.k$k.$RUN
    rm -f "$ready"
    "$GEN" --url "$(urls natter 3)" "${FAN_ARGS[@]}" --rate "$RATE1" --spread "$k" \
      --warmup "$WARM" --duration "$DUR" --drain "$DRAIN" --ready-file "$ready" \
      > "$OUT/gen.$tag.json" 2> "$OUT/gen.$tag.log" &
    local gpid=$!
    PIDS+=("$gpid")
    while [ ! -e "$ready" ] && kill -0 "$gpid" 2>/dev/null; do sleep 0.05; done
    sleep "$(awk "BEGIN{print 0.1 + $WARM}")"
    local i c0=() c1=() d0=() d1=() n0 n1 nats0 nats1
    for i in 0 1 2; do
      c0+=("$(ticks "${NODE_PIDS[$i]}")")
      d0+=("$(python3 "$ROOT/bench/report.py" metric "http://127.0.0.1:${API[$i]}" natter_deliveries_total)")
    done
    n0=$(python3 "$ROOT/bench/report.py" connz "http://127.0.0.1:$NATS_MON"); nats0=$(ticks "$NATS_PID")
    sleep "$DUR"
    for i in 0 1 2; do
      c1+=("$(ticks "${NODE_PIDS[$i]}")")
      d1+=("$(python3 "$ROOT/bench/report.py" metric "http://127.0.0.1:${API[$i]}" natter_deliveries_total)")
    done
    n1=$(python3 "$ROOT/bench/report.py" connz "http://127.0.0.1:$NATS_MON"); nats1=$(ticks "$NATS_PID")
    wait "$gpid" || true
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$gpid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    local extra
    extra=$(python3 - "$DUR" "$HZ" "${c0[*]}" "${c1[*]}" "${d0[*]}" "${d1[*]}" "$n0" "$n1" "$nats0" "$nats1" <<'EOF'
import json, sys
dur, hz = float(sys.argv[1]), float(sys.argv[2])
c0, c1 = [int(x) for x in sys.argv[3].split()], [int(x) for x in sys.argv[4].split()]
d0, d1 = [float(x) for x in sys.argv[5].split()], [float(x) for x in sys.argv[6].split()]
def parse(s):
    out = {}
    for line in s.splitlines():
        p = line.split()
        if len(p) >= 3: out[p[0]] = (int(p[1]), int(p[2]))
    return out
n0, n1 = parse(sys.argv[7]), parse(sys.argv[8])
names = ["bench-n1", "bench-n2", "bench-n3"]
kbps = [round((n1[n][0] - n0[n][0]) / dur / 1024, 1) if n in n0 and n in n1 else None
        for n in names]
cpu = [round((b - a) / hz / dur * 100, 1) for a, b in zip(c0, c1)]
dels = [b - a for a, b in zip(d0, d1)]
us = sum((b - a) / hz for a, b in zip(c0, c1)) / sum(dels) * 1e6 if sum(dels) else None
nats = (int(sys.argv[10]) - int(sys.argv[9])) / hz / dur * 100
print(json.dumps({"nats_kbps": kbps, "node_cpu_pct": cpu, "node_deliveries": dels,
                  "cpu_us_per_delivery": us, "nats_cpu_pct": round(nats, 1)}))
EOF
)
    python3 - "$RES" "$OUT/gen.$tag.json" "$extra" "$k" "$RUN" <<'EOF'
import json, sys
path, gen, extra, k, run = sys.argv[1:6]
try:
    r = json.loads(open(gen).read().strip().splitlines()[-1])
except Exception:
    r = {"error": "generator produced no result"}
r.update(json.loads(extra)); r["scenario"] = "s5"; r["system"] = "natter"; r["spread"] = int(k); r["run"] = int(run)
open(path, "a").write(json.dumps(r, sort_keys=True) + "\n")
EOF
    log "s5 spread $k: $extra"
  done
  stop_nodes
}

# storm_gen TAG KILL|TERM KILL_AT -- GENERATOR ARGS: the nodes are running (NODE_PIDS, the
# last one is the victim). A sampler (report.py sample) records every node's CPU and RSS,
# Redis and NATS counters every 0.25 s while the generator connects, waits, sends, kills
# the victim (--kill-pid) KILL_AT seconds after everybody is ready and counts the
# reconnects; the result gets the windows of each phase (report.py phases).
# NB_PERF=1: perf record -g of the first survivor for 4 s from just before the kill
# (OUT/perf.TAG.data; perf report -i ... --no-children).
storm_gen() {
  local tag=$1 sig=$2 kill_at=$3; shift 4
  local ready=$OUT/ready.$tag perf_pid=""
  rm -f "$ready"
  local samples=$OUT/samples.$tag.jsonl gen_out=$OUT/gen.$tag.json labels=() i n=${#NODE_PIDS[@]}
  for i in $(seq 0 $((n - 1))); do labels+=("n$((i + 1))=${NODE_PIDS[$i]},http://127.0.0.1:${API[$i]}"); done
  labels+=("nats=$NATS_PID" "redis=$REDIS_NT_PID")
  rm -f "$samples"
  start "sampler.$tag" python3 "$ROOT/bench/report.py" sample "$samples" 900 "$REDIS_NT" \
    "http://127.0.0.1:$NATS_MON" "${labels[@]}"
  local spid=$LASTPID
  for _ in $(seq 100); do [ -s "$samples" ] && break; sleep 0.05; done # a first sample: the baseline
  "$GEN" --url "$(urls natter "$n")" --reconnect --kill-pid "${NODE_PIDS[$((n - 1))]}" \
    --kill-signal "$sig" --ready-file "$ready" --quiet "$@" > "$gen_out" 2> "$OUT/gen.$tag.log" &
  local gpid=$!
  PIDS+=("$gpid")
  if [ "${NB_PERF:-0}" = 1 ] && command -v perf > /dev/null; then
    while [ ! -e "$ready" ] && kill -0 "$gpid" 2>/dev/null; do sleep 0.05; done
    sleep "$(awk "BEGIN{print $kill_at - 0.3}")"
    start "perf.$tag" perf record -F 999 -g -p "${NODE_PIDS[0]}" -o "$OUT/perf.$tag.data" -- sleep 4
    perf_pid=$LASTPID
  fi
  wait "$gpid" || true
  [ -z "$perf_pid" ] || stop "$perf_pid"
  for i in $(seq 0 $((n - 2))); do # the survivors' history and presence counters
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
      "http://127.0.0.1:${API[$i]}/metrics" 2>/dev/null | grep -E '^natter_(history|presence)_' \
      > "$OUT/metrics.$tag.n$((i + 1)).txt" || true
  done
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$gpid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  stop "$spid"
  python3 "$ROOT/bench/report.py" phases "$RES" "$gen_out" "$samples" scenario="${tag%%.*}" \
    system=natter run="$RUN" signal="$sig" nodes="$n" history=on > /dev/null
  tail -1 "$RES" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("run.sh: %s: %s ready in %s s, %s dropped, %s back in %s s (%s not back), lost %s, duplicated %s, 503 from survivors %s, recovered false %s" % (sys.argv[1], r.get("ready"), r.get("connect_s"), r.get("dropped"), r.get("rejoined"), r.get("back_s"), r.get("not_back"), r.get("lost"), r.get("duplicated"), r.get("reconnect_503"), r.get("recovered_false")), file=sys.stderr)' "$tag"
}

# 6: the victim (third node) holds 6/8 of every room's members; publishers (one per room,
# the first member) are on the first node.
scenario_storm() {
  local sig
  HISTORY=on
  for sig in KILL TERM; do
    stop_nodes; start_nodes 3
    history_storing || log "s6: history on, but the nodes do not report natter_history_storing 1"
    storm_gen "s6.$sig.$RUN" "$sig" "$(awk "BEGIN{print 0.2 + $W6 + $D6 + 1}")" -- --conns "$C6" --procs "$PROCS6" --src-addrs 4 \
      --rooms "$R6" --publishers "$R6" --rate "$RATE6" --weights 1,1,6 --ack self \
      --concurrency 1000 --connect-timeout 120 --warmup "$W6" --duration "$D6" --drain "$DR6" \
      --kill-after 1
    stop_nodes
  done
  # the negative control (smoke only): rejoining without since must show as lost messages,
  # or the accounting above could not see a loss (report.py check)
  if [ $SMOKE = 1 ]; then
    start_nodes 3
    history_storing || true
    storm_gen "s6nosince.KILL.$RUN" KILL 0 -- --conns "$C6" --procs "$PROCS6" --src-addrs 4 \
      --rooms "$R6" --publishers "$R6" --rate "$RATE6" --weights 1,1,6 --ack self \
      --concurrency 1000 --connect-timeout 120 --warmup "$W6" --duration "$D6" --drain "$DR6" \
      --kill-after 1 --no-since
    stop_nodes
  fi
  HISTORY=off
}

redis_info() { # redis_info FIELD: one field of the benchmark Redis' INFO
  redis-cli -p "$REDIS_NT" info all 2>/dev/null | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'
}

# 8: one room filled by NB_FILL distinct users over 2 nodes, all joining at once.
scenario_fill() {
  stop_nodes; start_nodes 2
  local tag=s8.natter.$RUN perf_pid=""
  local cmd0 cpu0 t0 n0
  cmd0=$(redis_info total_commands_processed); cpu0=$(redis_info used_cpu_sys_main_thread)
  cpu0=$(awk -v a="$cpu0" -v b="$(redis_info used_cpu_user_main_thread)" 'BEGIN{print a + b}')
  n0=$(ticks "${NODE_PIDS[@]}"); t0=$(date +%s.%N)
  if [ "${NB_PERF:-0}" = 1 ] && command -v perf > /dev/null; then
    start "perf.$tag" perf record -F 499 -g -p "${NODE_PIDS[0]}" -o "$OUT/perf.$tag.data" -- sleep 600
    perf_pid=$LASTPID
  fi
  "$GEN" --url "$(urls natter 2)" --conns "$C8" --rooms 1 --src-addrs 2 --concurrency 1000 \
    --connect-timeout 400 --warmup 0 --duration 0.5 --drain 3 --quiet > "$OUT/gen.$tag.json" 2> "$OUT/gen.$tag.log" || true
  [ -z "$perf_pid" ] || { kill -INT "$perf_pid" 2>/dev/null || true; sleep 2; stop "$perf_pid"; }
  local cmd1 cpu1 t1 n1
  cmd1=$(redis_info total_commands_processed)
  cpu1=$(awk -v a="$(redis_info used_cpu_sys_main_thread)" -v b="$(redis_info used_cpu_user_main_thread)" 'BEGIN{print a + b}')
  n1=$(ticks "${NODE_PIDS[@]}"); t1=$(date +%s.%N)
  python3 "$ROOT/bench/report.py" annotate "$RES" "$OUT/gen.$tag.json" scenario=s8 system=natter run="$RUN" \
    fill="$C8" redis_cmds="$((cmd1 - cmd0))" redis_cpu_s="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b - a}')" \
    node_cpu_s="$(awk -v a="$n0" -v b="$n1" -v hz="$HZ" 'BEGIN{printf "%.2f", (b - a) / hz}')" \
    wall_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')" > /dev/null
  log "s8: $(tail -1 "$RES" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%s of %s joined, connect %s s, %s presence frames, Redis %s commands (%s CPU s), nodes %s CPU s" % (r.get("ready"), r.get("fill"), r.get("connect_s"), r.get("presence"), r.get("redis_cmds"), r.get("redis_cpu_s"), r.get("node_cpu_s")))')"
  stop_nodes
}

# 7: every room's members over all 7 nodes; --idle seconds of silence (pings only, every
# --ping-interval $PING7 s) before the stream starts.
scenario_100k() {
  HISTORY=on
  stop_nodes; start_nodes 7 --ping-interval "$PING7"
  history_storing || log "s7: history on, but the nodes do not report natter_history_storing 1"
  storm_gen "s7.KILL.$RUN" KILL "$(awk "BEGIN{print 0.2 + $IDLE7 + $W7 + $D7 + 1}")" -- --conns "$C7" --procs "$PROCS7" --src-addrs 7 \
    --rooms "$R7" --big-rooms "$BIG7" --big-room-size "$BIGS7" --publishers "$R7" \
    --rate "$RATE7" --ack self --concurrency 1000 --connect-timeout 400 --idle "$IDLE7" \
    --warmup "$W7" --duration "$D7" --drain "$DR7" --kill-after 1
  python3 "$ROOT/bench/report.py" mark "$RES" ping_interval="$PING7" big_rooms="$BIG7" big_size="$BIGS7"
  stop_nodes
  HISTORY=off
}

for RUN in $(seq 1 "$RUNS"); do
  log "---- run $RUN of $RUNS ----"
  has 1 && scenario_fanout s1 --rate "$RATE1"
  has 2 && scenario_fanout s2 --rate 0 --window "$WIN"
  has 3 && scenario_memory
  has 4 && scenario_connect
  has 5 && scenario_scaleout
  has 6 && scenario_storm
  has 7 && scenario_100k
  has 8 && scenario_fill
done

{
  echo
  echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "natter $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- node cluster proto 2>/dev/null || echo '+local changes') (Release), nats-server $(nats-server --version 2>/dev/null | awk '{print $2}'), redis $(redis-server --version | awk '{print $3}' | cut -d= -f2)$([ $SIO = yes ] && echo ", node $(node --version), socket.io $(cd "$SIODIR" && node -p 'require("socket.io/package.json").version')")"
  echo
  python3 "$ROOT/bench/report.py" table "$RES"
} | tee "$OUT/table.md"

if [ $SMOKE = 1 ]; then
  python3 "$ROOT/bench/report.py" check "$RES"
fi

#!/usr/bin/env bash
# tests/fuzz/run.sh — runs natter's libFuzzer targets (built by tests/fuzz/build.sh).
#
#   tests/fuzz/run.sh --smoke [SECONDS]     each target for SECONDS (default 5): CI
#   tests/fuzz/run.sh --long N              each target for N executions
#   options: --targets a,b   only these (names without the fuzz_ prefix, e.g. http,ws)
#            -j J            run J targets at a time (default 1; the machine has 2 cores)
#            --build         run build.sh first (with --install: apt-get clang if missing)
#
# Each target starts from its checked-in seeds (tests/fuzz/corpus/<target>/, read-only)
# plus a working corpus in OUT/corpus/<target>/ that keeps what it finds between runs
# (OUT: $FUZZ_OUT, else build-fuzz/ for --smoke and build-fuzz-long/ for --long, so the
# test suite's smoke never touches a long run). A crash, leak, sanitizer report or timeout
# leaves the input in OUT/artifacts/<target>/ and makes the script exit non-zero. At the
# end it prints one line per target: executions, seconds, executions per second, result.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${FUZZ_OUT:-}
MODE=""
ARG=""
JOBS=1
BUILD=0
TARGETS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke; if [[ "${2:-}" =~ ^[0-9]+$ ]]; then ARG=$2; shift; else ARG=5; fi ;;
    --long) MODE=long; ARG=${2:?--long needs N}; shift ;;
    --targets) TARGETS=$2; shift ;;
    -j) JOBS=$2; shift ;;
    --build) BUILD=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$MODE" ] || { echo "run.sh: give --smoke [SECONDS] or --long N" >&2; exit 2; }
# Long runs get a tree of their own: the test suite's smoke run (build-fuzz/) rebuilds its
# binaries and rewrites its logs, and must not do so under a run of hours.
[ -n "$OUT" ] || OUT=$ROOT/build-fuzz$([ "$MODE" = long ] && echo -long)
if [ $BUILD = 1 ]; then bash "$ROOT/tests/fuzz/build.sh" --install --out "$OUT" || exit 1; fi

all=()
for t in "$OUT"/fuzz_*; do [ -x "$t" ] && all+=("$(basename "$t")"); done
[ ${#all[@]} -gt 0 ] || { echo "run.sh: no targets in $OUT (run tests/fuzz/build.sh)" >&2; exit 1; }
sel=()
for t in "${all[@]}"; do
  if [ -z "$TARGETS" ] || [[ ",$TARGETS," == *",${t#fuzz_},"* ]]; then sel+=("$t"); fi
done

max_len() {
  case "$1" in
    fuzz_ws) echo 16384 ;;
    fuzz_envelope|fuzz_jwt|fuzz_http) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# The node targets keep one node whose state grows between inputs (history, presence,
# metrics), so libFuzzer's per-input leak check (a full LeakSanitizer scan after every
# input with new coverage whose mallocs and frees differ) took over half their time.
# They run with -detect_leaks=0: LeakSanitizer still checks when the process exits, and
# any leak fails the run with its allocation stack.
leak_flag() {
  case "$1" in
    fuzz_ws|fuzz_api_http|fuzz_envelope|fuzz_pages) echo -detect_leaks=0 ;;
    *) echo -detect_leaks=1 ;;
  esac
}

run_one() { # run_one TARGET: writes $OUT/logs/TARGET.log and TARGET.result
  local t=$1 seeds=$ROOT/tests/fuzz/corpus/$1
  local work=$OUT/corpus/$t art=$OUT/artifacts/$t/ log=$OUT/logs/$t.log
  mkdir -p "$work" "$art" "$OUT/logs" "$seeds"
  local lim
  if [ "$MODE" = smoke ]; then lim=(-max_total_time="$ARG"); else lim=(-runs="$ARG"); fi
  local t0 rc
  t0=$(date +%s.%N)
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$OUT/$t" "${lim[@]}" -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2560 "$(leak_flag "$t")" \
      -print_final_stats=1 -artifact_prefix="$art" "$work" "$seeds" > "$log" 2>&1
  rc=$?
  local secs execs eps
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-15s %12s %9.0f %9s  %s\n' "$t" "${execs:-?}" "$secs" "${eps:-?}" \
    "$([ $rc = 0 ] && echo ok || echo "FAILED (rc $rc, see $log)")" > "$OUT/logs/$t.result"
  return $rc
}

echo "run.sh: ${MODE} ($ARG) of ${sel[*]} in $OUT, $JOBS at a time"
for t in "${sel[@]}"; do rm -f "$OUT/logs/$t.result"; done
for t in "${sel[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run_one "$t" &
done
wait
fail=0
for t in "${sel[@]}"; do grep -q ' ok$' "$OUT/logs/$t.result" 2>/dev/null || fail=1; done

printf '%-15s %12s %9s %9s  %s\n' target executions seconds exec/s result
for t in "${sel[@]}"; do cat "$OUT/logs/$t.result" 2>/dev/null || echo "$t: no result"; done
if [ $fail != 0 ]; then
  echo "run.sh: FAILED — crash inputs in $OUT/artifacts/, logs in $OUT/logs/" >&2
  for t in "${sel[@]}"; do
    grep -q ' ok$' "$OUT/logs/$t.result" 2>/dev/null || grep -m1 -A12 -E "ERROR|SUMMARY|runtime error|deadly signal" "$OUT/logs/$t.log" >&2
  done
  exit 1
fi
echo "run.sh: $((${#sel[@]})) passed, 0 failed"

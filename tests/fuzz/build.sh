#!/usr/bin/env bash
# tests/fuzz/build.sh — builds natter's libFuzzer targets with clang, ASan and UBSan.
#
#   tests/fuzz/build.sh [--out DIR] [--install]
#
# Compiles lib/ and node/ (protoc-c output included) with coverage
# instrumentation (-fsanitize=fuzzer-no-link) and links one binary per tests/fuzz/fuzz_*.c
# into DIR (default: build-fuzz/). Independent of CMake: the project's own build is not
# touched. Incremental: an object is rebuilt only when its source or a header is newer.
# FUZZ_COVERAGE=1: source-based coverage instead of the sanitizers (a separate DIR, e.g.
# build-fuzz-cov), to see which lines a corpus reaches (tests/fuzz/README.md).
# --install first installs clang and the libFuzzer runtime from Debian (bookworm: clang-14,
# libclang-rt-14-dev) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build-fuzz
INSTALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift ;;
    --install) INSTALL=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

pick_cc() {
  for c in "${CC_FUZZ:-}" clang clang-14; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && { echo "$c"; return; }
  done
}
CC=$(pick_cc || true)
has_fuzzer() { # the libFuzzer runtime ships in libclang-rt-*-dev
  [ -n "$CC" ] && echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' |
    "$CC" -x c -fsanitize=fuzzer,address - -o /dev/null >/dev/null 2>&1
}
if ! has_fuzzer; then
  if [ $INSTALL = 1 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/dev/null
    CC=$(pick_cc || true)
  fi
  has_fuzzer || { echo "build.sh: clang with libFuzzer not found (run with --install)" >&2; exit 1; }
fi

mkdir -p "$OUT/obj" "$OUT/proto"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
[ "${FUZZ_COVERAGE:-0}" = 1 ] && SAN="-fprofile-instr-generate -fcoverage-mapping"
# Every source folder of the layered tree (CMakeLists.txt), lowest first.
LAYER_DIRS="lib/base lib/wire lib/bus lib/presence lib/history lib/httpc node/net node/chat node/ops node"
CFLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wno-unused-parameter $SAN
  -DNATTER_VERSION=\"fuzz\" -DNATTER_COMMIT=\"fuzz\" -DNATTER_DEFAULT_STATIC_DIR=\"/nonexistent\" -DNATTER_DEFAULT_CLIENT_JS=\"/nonexistent\"
  -I$OUT/proto $(for d in $LAYER_DIRS; do printf -- "-I$ROOT/%s " "$d"; done)-I$ROOT/tests/fuzz"
LIBS="-luv -lprotobuf-c -lhiredis -ljansson -lnats -ljwt -lssl -lcrypto -lz -lwslay
  -lhttp_parser -lcurl -lm -lpthread"

# protoc-c output, regenerated when the schema changes
if [ ! -f "$OUT/proto/natter.pb-c.c" ] || [ "$ROOT/lib/wire/natter.proto" -nt "$OUT/proto/natter.pb-c.c" ]; then
  protoc-c --c_out="$OUT/proto" -I"$ROOT/lib/wire" natter.proto
fi

SRCS=("$OUT/proto/natter.pb-c.c" $(for d in $LAYER_DIRS; do ls "$ROOT/$d"/nt_*.c 2>/dev/null; done)
      "$ROOT"/tests/fuzz/fz_*.c)
# Any header change rebuilds everything (a content hash, not mtimes: robust to copied trees).
hsum=$(cat $(for d in $LAYER_DIRS; do ls "$ROOT/$d"/*.h; done) "$ROOT"/tests/fuzz/*.h \
       "$OUT/proto/natter.pb-c.h" | md5sum | cut -d' ' -f1)
[ "$(cat "$OUT/obj/.headers" 2>/dev/null)" = "$hsum" ] || rm -f "$OUT"/obj/*.o
todo=()
OBJS=()
for s in "${SRCS[@]}"; do
  o="$OUT/obj/$(basename "$(dirname "$s")")_$(basename "${s%.c}").o"
  OBJS+=("$o")
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then todo+=("$s|$o"); fi
done
if [ ${#todo[@]} -gt 0 ]; then
  echo "build.sh: compiling ${#todo[@]} source(s) with $CC"
  export CC CFLAGS
  printf '%s\n' "${todo[@]}" | xargs -P "${FUZZ_JOBS:-2}" -I{} sh -c '
    s=${1%%|*}; o=${1##*|}
    $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$s" -o "$o" || exit 255' _ {}
fi
echo "$hsum" > "$OUT/obj/.headers"

for t in "$ROOT"/tests/fuzz/fuzz_*.c; do
  name=$(basename "${t%.c}")
  bin=$OUT/$name
  if [ ! -x "$bin" ] || [ "$t" -nt "$bin" ] || [ -n "$(find "$OUT/obj" -newer "$bin" -name '*.o' | head -1)" ]; then
    echo "build.sh: linking $name"
    # shellcheck disable=SC2086
    $CC $CFLAGS -fsanitize=fuzzer "$t" "${OBJS[@]}" $LIBS -o "$bin"
  fi
done
echo "build.sh: targets in $OUT: $(cd "$OUT" && ls fuzz_* | tr '\n' ' ')"

#!/usr/bin/env bash
# Configures and builds natter with CMake; prints the build directory on the last line.
#   scripts/build.sh [--sanitize] [builddir]
# Default build dir: build/ (plain RelWithDebInfo) or build-asan/ (ASan+UBSan, Debug).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

sanitize=0
builddir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    *) builddir="$1" ;;
  esac
  shift
done

if [ -z "$builddir" ]; then
  if [ "$sanitize" -eq 1 ]; then builddir=build-asan; else builddir=build; fi
fi
case "$builddir" in /*) ;; *) builddir="$ROOT/$builddir" ;; esac

if [ "$sanitize" -eq 1 ]; then
  args=(-DCMAKE_BUILD_TYPE=Debug -DNATTER_SANITIZE=ON)
else
  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNATTER_SANITIZE=OFF)
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$ROOT" -B "$builddir" "${args[@]}" >&2
cmake --build "$builddir" -j "$jobs" >&2
echo "$builddir"

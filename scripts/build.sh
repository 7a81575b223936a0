#!/usr/bin/env bash
# Configures and builds tpinfer into build/ (or $BUILD_DIR). The CUDA backend is built when nvcc
# is found (TPINFER_CUDA=AUTO); pass -DTPINFER_CUDA=OFF (as extra arguments) for a CPU-only tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
jobs=${JOBS:-$(nproc)}
# ccache keys on paths relative to the checkout, so clones and worktrees share one cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
mkdir -p "$build"
log=$build/configure.log
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }
grep -E "tpinfer:" "$log" || true
cmake --build "$build" -j "$jobs"

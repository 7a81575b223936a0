#!/usr/bin/env bash
# From a fresh clone: install dependencies (SLURM included, for the sbatch tests), build, and run
# the whole test suite with CTest. GPU tests report themselves as skipped on machines without one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
TPINFER_WITH_SLURM=1 scripts/install_deps.sh
scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 -j "${CTEST_JOBS:-2}" "$@"

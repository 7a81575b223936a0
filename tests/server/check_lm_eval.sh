#!/usr/bin/env bash
# lm-evaluation-harness against `tpinfer --serve` (issue 17; see check_lm_eval.py). Makes (once,
# then reuses) a virtual environment under the build tree with lm-eval[api] from PyPI (no torch:
# its API models do not need it; about 5 minutes and 760 MB the first time), then runs
# check_lm_eval.py. Exit 77 (skipped) when PyPI cannot be reached.
# Usage: check_lm_eval.sh TPINFER CONVERTED_STORIES260K_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3/lm-eval-e2e
here=$(cd "$(dirname "$0")" && pwd)
venv=$3/lm-eval-venv  # kept between runs: pip runs once
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found"; exit 1; }

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import lm_eval, aiohttp" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "FAIL: python3 -m venv $venv failed"; exit 1; }
  start=$(date +%s)
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 30 \
      "lm-eval[api]>=0.4.9" >"$3/lm-eval-venv-pip.log" 2>&1; then
    echo "SKIP: pip could not install 'lm-eval[api]' from PyPI into $venv (offline?); see" \
         "$3/lm-eval-venv-pip.log"
    tail -n 5 "$3/lm-eval-venv-pip.log"
    rm -rf "$venv"
    exit 77
  fi
  echo "lm-eval venv made in $(( $(date +%s) - start )) s"
fi
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "note: torch is in $venv (pulled in by a dependency)"
fi
echo "lm_eval $("$venv/bin/pip" show lm-eval 2>/dev/null | sed -n 's/^Version: //p') in $venv"
export TPINFER_LAUNCH_QUIET=1
exec timeout 1500 "$venv/bin/python" "$here/check_lm_eval.py" "$bin" "$model" "$work"

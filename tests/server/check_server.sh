#!/usr/bin/env bash
# The OpenAI-compatible server end to end (issue 9): makes (once, then reuses) a virtual
# environment under the build tree with the real `openai` client from PyPI, then runs
# openai_client_test.py, which starts `tpinfer --serve` under scripts/mpirun.sh -np 4 (dp 2 x
# tp 2) on a free loopback port and checks the client, streaming, logprobs, 32 concurrent
# streams, a dropped client, every error status, a full queue (429), the API key (401) and
# SIGTERM while streaming (see that file). Exit 77 (skipped) when PyPI cannot be reached.
# Usage: check_server.sh TPINFER CONVERTED_STORIES260K_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3/server-e2e
here=$(cd "$(dirname "$0")" && pwd)
venv=$3/server-venv  # kept between runs: pip runs once
for tool in curl mpirun; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool not found"; exit 1; }
done

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "FAIL: python3 -m venv $venv failed"; exit 1; }
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 30 openai \
      >"$3/server-venv-pip.log" 2>&1; then
    echo "SKIP: pip could not install 'openai' from PyPI into $venv (offline?); see" \
         "$3/server-venv-pip.log"
    tail -n 5 "$3/server-venv-pip.log"
    rm -rf "$venv"
    exit 77
  fi
fi
echo "openai $("$venv/bin/python" -c 'import openai; print(openai.__version__)') in $venv"
rm -rf "$work"
mkdir -p "$work"
export TPINFER_LAUNCH_QUIET=1
exec timeout 840 "$venv/bin/python" "$here/openai_client_test.py" "$bin" "$model" "$work"

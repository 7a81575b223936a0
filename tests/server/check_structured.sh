#!/usr/bin/env bash
# Structured output and tool calling end to end (issue 17): makes (once, then reuses) a virtual
# environment under the build tree with the real `openai` client and `jsonschema` from PyPI,
# then runs structured_test.py against `tpinfer --serve` (tiny Qwen3 shape, dummy weights, the
# real Qwen3 tokenizer). Exit 77 (skipped) when PyPI cannot be reached.
# Usage: check_structured.sh TPINFER WORK_DIR
set -euo pipefail
bin=$1 work=$2/structured-e2e
here=$(cd "$(dirname "$0")" && pwd)
venv=$2/structured-venv  # kept between runs: pip runs once
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found"; exit 1; }

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import openai, jsonschema" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "FAIL: python3 -m venv $venv failed"; exit 1; }
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 30 openai jsonschema \
      >"$2/structured-venv-pip.log" 2>&1; then
    echo "SKIP: pip could not install 'openai jsonschema' from PyPI into $venv (offline?); see" \
         "$2/structured-venv-pip.log"
    tail -n 5 "$2/structured-venv-pip.log"
    rm -rf "$venv"
    exit 77
  fi
fi
"$venv/bin/python" -c 'import openai, jsonschema; print("openai", openai.__version__, "jsonschema", jsonschema.__version__)' 2>/dev/null ||
  "$venv/bin/python" -c 'import openai; print("openai", openai.__version__)'
rm -rf "$work"
mkdir -p "$work"
export TPINFER_LAUNCH_QUIET=1
exec timeout 840 "$venv/bin/python" "$here/structured_test.py" "$bin" "$work"

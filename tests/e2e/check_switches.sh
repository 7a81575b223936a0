#!/usr/bin/env bash
# The two switches of the integrity checks: verify_checksums: false loads a shard whose sha256
# no longer matches (exit 0), and allow_long_context: true runs prompt + max_new_tokens beyond
# max_position_embeddings with a warning instead of refusing it.
# Usage: check_switches.sh TPINFER E2E_WORK_DIR CONVERTED_TP4_DIR (fixtures of make_fixtures.sh)
set -euo pipefail
bin=$1 work=$2 model=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
err=$(mktemp)
trap 'rm -f "$err"' EXIT
run() { timeout 180 "$root/scripts/mpirun.sh" -np 4 "$bin" "$@" >/dev/null 2>"$err"; }

run --model "$work/stories-bitflip-rank3" --prompt hi --max-new-tokens 2 --verify-checksums false ||
  { echo "FAIL: verify_checksums: false did not load the damaged shard"; cat "$err"; exit 1; }
echo "verify_checksums false: loaded"

run --model "$model" --prompt "Once upon a time" --ignore-eos \
    --max-new-tokens 508 --allow-long-context --stream false ||
  { echo "FAIL: allow_long_context did not run"; cat "$err"; exit 1; }
grep -q "warning: prompt + max_new_tokens = 513 exceeds the model's max_position_embeddings=512 (allow_long_context: true" \
    "$err" || { echo "FAIL: no warning"; cat "$err"; exit 1; }
echo "allow_long_context: ran with the warning"
echo PASS

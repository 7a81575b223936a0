#!/usr/bin/env bash
# int8 through the binary: an int8 conversion (the model test's tp 2 shards) streams the same
# greedy text as f32 for its first words, the start-up line names the int8 path and the memory
# plan counts fewer weight bytes; --dummy-weights --dtype int8 (the benchmark hook) runs at tp 2.
# Usage: check_int8.sh TPINFER F32_TP2_DIR INT8_TP2_DIR
set -euo pipefail
bin=$1 f32=$2 int8=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
err=$(mktemp)
trap 'rm -f "$err"' EXIT
run() { timeout 180 "$root/scripts/mpirun.sh" -np 2 "$bin" --threads 1 "$@" 2>"$err"; }
weights() { grep -oE "memory plan per rank: params [^|]*\| weights [0-9.]+ [KMG]?i?B" "$err" | sed 's/.*weights //'; }

want=$(run --model "$f32" --prompt "Once upon a time" --max-new-tokens 24) ||
  { echo "FAIL: f32 run"; cat "$err"; exit 1; }
w32=$(weights)
got=$(run --model "$int8" --prompt "Once upon a time" --max-new-tokens 24) ||
  { echo "FAIL: int8 run"; cat "$err"; exit 1; }
w8=$(weights)
grep -q "int8 linear weights, int8 matmul" "$err" || { echo "FAIL: no int8 path in the log"; cat "$err"; exit 1; }
echo "f32:  $want"
echo "int8: $got"
echo "weights per rank: f32 $w32, int8 $w8"
[[ ${got:0:60} == "${want:0:60}" ]] || { echo "FAIL: the int8 story differs within 60 characters"; exit 1; }
[[ $w8 != "$w32" ]] || { echo "FAIL: the memory plan counts the same weight bytes"; exit 1; }

run --model "$root/configs/models/stories260K" --dummy-weights --dtype int8 --prompt "Once upon" \
    --max-new-tokens 8 --ignore-eos >/dev/null || { echo "FAIL: dummy int8"; cat "$err"; exit 1; }
grep -q "int8 linear weights" "$err" || { echo "FAIL: dummy int8 is not int8"; cat "$err"; exit 1; }
echo "dummy weights --dtype int8: ran"
echo PASS

#!/usr/bin/env bash
# Batched decoding changes nothing but which rows share a forward: under mpirun -np 4 with
# dp=2 x tp=2, every result must equal the single-prompt run of its request (tp=2 on 2 ranks)
# token for token, greedy and seeded sampling alike, at batch sizes 1, 3 and 8 (3 mixes prefill
# chunks of new requests with the decode tokens of running ones in one forward).
# Usage: check_greedy.sh TPINFER CONVERTED_TP2_DIR WORK_DIR
set -euo pipefail
# shellcheck source=single_refs.sh
source "$(dirname "$0")/single_refs.sh"
bin=$1 model=$2 work=$3/greedy
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check="/usr/bin/python3 $here/batch_check.py"
rm -rf "$work"
mkdir -p "$work/single"

$check prompts 12 "$work/in.jsonl"
# The reference: each request alone, in single-prompt mode, with the same settings.
single_refs "$bin" "$model" "$work/in.jsonl" "$work/single"
echo "ran $(ls "$work/single"/*.json | wc -l) single-prompt references"

for bs in 1 3 8; do
  timeout 300 "$root/scripts/mpirun.sh" -np 4 "$bin" --model "$model" --tp 2 \
      --input "$work/in.jsonl" --output "$work/out-b$bs.jsonl" --batch-size "$bs" \
      2>"$work/batch-b$bs.err"
  grep "batch: .* result(s) written" "$work/batch-b$bs.err"
  grep -q "dp 2 x tp 2" "$work/batch-b$bs.err"
  $check exactly-once "$work/in.jsonl" "$work/out-b$bs.jsonl"
  $check vs-single "$work/in.jsonl" "$work/single" "$work/out-b$bs.jsonl"
done
# Both replicas took work.
/usr/bin/python3 - "$work/out-b3.jsonl" <<'PY'
import json, sys
reps = {json.loads(l)["replica"] for l in open(sys.argv[1])}
assert reps == {0, 1}, f"replicas used: {reps}"
print("both replicas produced results")
PY
echo "PASS"

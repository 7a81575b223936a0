#!/usr/bin/env bash
# int8 experts end to end: tiny-qwen3-moe converted with --dtype int8 (experts int8, routers
# float) against its f32 conversion at tp 2, with tpinfer-compare-logits over 64 greedy steps:
# the teacher-forced top-1 agreement must reach MIN_TOP1 and the relative logit error stay under
# MAX_REL (a tiny random model: wider than stories260K's bounds, far from a broken path, which
# agrees on ~1/298 of the steps).
# usage: check_int8_moe.sh BUILD_DIR MODELS_DIR
set -euo pipefail
build=$1 models=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
MIN_TOP1=${MIN_TOP1:-0.90}
MAX_REL=${MAX_REL:-0.25}
"$root/scripts/mpirun.sh" -np 2 "$build/tpinfer-compare-logits" --ref "$models/tiny-qwen3-moe-tp2" \
  --test "$models/tiny-qwen3-moe-int8-tp2" --steps 64 --threads 1 |
  /usr/bin/python3 -c '
import json, sys
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])
min_top1, max_rel = float(sys.argv[1]), float(sys.argv[2])
print("tiny-qwen3-moe int8 tp 2: top-1 agreement %.4f, relative logit error %.4f"
      % (j["top1_agreement"], j["max_rel_err"]))
sys.exit(0 if j["top1_agreement"] >= min_top1 and j["max_rel_err"] <= max_rel else 1)
' "$MIN_TOP1" "$MAX_REL"

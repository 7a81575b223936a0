#!/usr/bin/env bash
# The int8 accuracy report of docs/INT8.md: tpinfer f32 against tpinfer int8 (blocks of 32 and
# per output channel) on the bundled stories260K and the tiny Hugging Face test models, with
# tpinfer-compare-logits (teacher-forced top-1 agreement over STEPS greedy steps of the f32
# model, maximum absolute and relative logit error), then the bundled model's greedy story in
# f32 and in int8 side by side. Prints markdown on stdout.
# usage: scripts/int8_accuracy.sh [BUILD_DIR (build)] [WORK_DIR (BUILD_DIR/int8-accuracy)]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=${2:-$build/int8-accuracy}
steps=${STEPS:-256}
tp=${TP:-1}
for exe in tpinfer tpinfer-compare-logits; do
  [[ -x $build/$exe ]] || { echo "int8_accuracy.sh: $build/$exe not built" >&2; exit 1; }
done
mkdir -p "$work"
models=("stories260K=$root/configs/models/stories260K")
for m in tiny-llama tiny-mistral tiny-qwen3; do models+=("$m=$root/tests/data/models/$m"); done

convert() {  # name src out extra-args...
  local out=$3
  shift 3
  /usr/bin/python3 "$root/scripts/convert_hf.py" --quiet --model "$src" --tp "$tp" --out "$out" "$@"
}

echo "| model | weights | top-1 agreement ($steps steps, teacher-forced) | max abs logit err | max rel err | mean abs err | free-running greedy equal to f32 for |"
echo "|---|---|---|---|---|---|---|"
for entry in "${models[@]}"; do
  name=${entry%%=*} src=${entry#*=}
  convert "$name" "$src" "$work/$name-f32" --dtype f32
  # bf16 as the yardstick: the error of plain bf16 weights on the same measure.
  convert "$name" "$src" "$work/$name-bf16" --dtype bf16
  for variant in int8-b32 int8-b0 bf16; do
    case $variant in
      int8-b32) convert "$name" "$src" "$work/$name-$variant" --dtype int8 --int8-block 32 ;;
      int8-b0) convert "$name" "$src" "$work/$name-$variant" --dtype int8 --int8-block 0 ;;
    esac
    "$root/scripts/mpirun.sh" -np "$tp" "$build/tpinfer-compare-logits" --ref "$work/$name-f32" \
      --test "$work/$name-$variant" --steps "$steps" --threads 1 \
      >"$work/$name-$variant.json" 2>"$work/$name-$variant.log"
    /usr/bin/python3 - "$work/$name-$variant.json" "$name" "$variant" "$steps" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
name, variant, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
label = {"int8-b32": "int8, block 32", "int8-b0": "int8, per channel", "bf16": "bf16 (yardstick)"}
d = j["first_divergence"]
print("| %s | %s | %.4f | %.4f | %.4f | %.5f | %s |" % (
    name, label[variant], j["top1_agreement"], j["max_abs_err"], j["max_rel_err"],
    j["mean_abs_err"], "all %d steps" % steps if d < 0 else "%d steps" % d))
PY
  done
done

echo
echo "stories260K, greedy, prompt \"Once upon a time\" (first 200 characters):"
echo
for variant in f32 int8-b32 int8-b0; do
  text=$("$root/scripts/mpirun.sh" -np "$tp" "$build/tpinfer" --model "$work/stories260K-$variant" \
    --prompt "Once upon a time" --max-new-tokens 200 --threads 1 2>/dev/null | tr '\n' ' ' | cut -c1-200)
  echo "- **$variant**: $text"
done

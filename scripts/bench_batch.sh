#!/usr/bin/env bash
# Batch-inference throughput (not a test): generated tokens/s of `tpinfer --input/--output` at
# several batch sizes (KV slots per replica), for the bundled model (converted weights) and
# larger shapes with --dummy-weights. Every request generates exactly NEW_TOKENS (ignore_eos);
# tokens/s = generated tokens / wall time of the batch phase (prefill included, load excluded).
# Prints a Markdown table.
#
#   scripts/bench_batch.sh                       # CPU: 2 ranks (dp=2 x tp=1), batch 1 8 32
#   NP=4 TP=2 scripts/bench_batch.sh             # dp=2 x tp=2
#   BACKEND=cuda NP=1 MODELS="llama-100m qwen3-0.6b qwen3-4b" scripts/bench_batch.sh   # a GPU
#
# Environment: BIN (build/tpinfer), NP (2), TP (1), BATCHES ("1 8 32"), MODELS ("stories260K
# llama-100m"; names under configs/models/), NEW_TOKENS (128; 32 for dummy shapes), BACKEND (cpu).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-build/tpinfer}
np=${NP:-2}
tp=${TP:-1}
batches=${BATCHES:-1 8 32}
models=${MODELS:-stories260K llama-100m}
backend=${BACKEND:-cpu}
dp=$((np / tp))
[[ -x $bin ]] || { echo "no $bin: build first (scripts/build.sh)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# model_args NAME: the flags that select a model (converting the bundled one on first use).
model_args() {
  case $1 in
    stories260K)
      local dir=build/models/stories260K-tp$tp
      /usr/bin/python3 scripts/convert_hf.py --is-current "$dir" ||
        /usr/bin/python3 scripts/convert_hf.py --quiet \
          --model configs/models/stories260K --tp "$tp" --dtype f32 --out "$dir"
      echo "--model $dir" ;;
    llama-100m) echo "--model configs/models/llama-100m --dummy-weights --tokenizer configs/tokenizers/mistral" ;;
    qwen3-*) echo "--model configs/models/$1 --dummy-weights --tokenizer configs/tokenizers/qwen3" ;;
    *) echo "--model configs/models/$1 --dummy-weights --tokenizer configs/models/$1" ;;
  esac
}

echo "Host: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores; backend $backend;" \
     "$np rank(s) = dp $dp x tp $tp; $(date -u +%F)"
echo
echo "| model | batch / replica | requests | new tok each | generated tok/s | total tok/s | vs batch 1 |"
echo "|---|---|---|---|---|---|---|"
for model in $models; do
  if [[ $model == stories260K ]]; then new=${NEW_TOKENS:-128}; else new=${NEW_TOKENS:-32}; fi
  base=""
  for bs in $batches; do
    # Enough requests to keep every slot of every replica busy twice over (and at least 8 per
    # replica, so that batch 1 is not timed on a handful of sequences).
    n=$((2 * bs * dp))
    ((n >= 8 * dp)) || n=$((8 * dp))
    /usr/bin/python3 - "$n" "$new" "$out/in.jsonl" <<'PY'
import json, sys
starts = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day",
          "Tom had a red ball", "The sun was shining", "A big cat sat on the mat"]
n, new, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": i, "prompt": starts[i % len(starts)], "max_new_tokens": new}) + "\n")
PY
    rm -f "$out/out.jsonl"
    # shellcheck disable=SC2046  # model_args returns flags
    scripts/mpirun.sh -np "$np" "$bin" $(model_args "$model") --tp "$tp" --backend "$backend" \
        --input "$out/in.jsonl" --output "$out/out.jsonl" --batch-size "$bs" --ignore-eos \
        --temperature 0 --progress-interval-s 0 --metrics-json "$out/m.json" \
        </dev/null >/dev/null 2>"$out/err" || { cat "$out/err"; exit 1; }
    read -r gen total < <(/usr/bin/python3 -c "
import json; m = json.load(open('$out/m.json'))
print(f\"{m['generated_tokens_per_s']:.1f} {m['total_tokens_per_s']:.1f}\")")
    [[ -n $base ]] || base=$gen
    speedup=$(/usr/bin/python3 -c "print(f'{$gen / $base:.2f}x')")
    echo "| $model | $bs | $n | $new | $gen | $total | $speedup |"
  done
done

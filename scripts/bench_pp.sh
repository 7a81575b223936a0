#!/usr/bin/env bash
# Pipeline throughput (not a test): generated tokens/s of one batch on NP ranks as tp NP (no
# stages), as pp NP stages with NP decode micro-batches in flight (the default) and as pp NP with
# one step in flight (TPINFER_PP_MICROBATCHES=1: every stage but one idles), in one run on the
# same machine, rounds interleaved. The ratio column is against the one-step pipeline. Every
# request generates exactly NEW_TOKENS (ignore_eos); tokens/s = generated tokens / wall time of
# the batch phase (prefill included, load excluded). Prints a Markdown table.
#
#   scripts/bench_pp.sh                          # CPU: 2 ranks, llama-100m (dummy weights)
#   NP=4 MODEL=stories260K scripts/bench_pp.sh
#
# Environment: BIN (build/tpinfer), NP (2), MODEL (llama-100m; a name under configs/models/,
# stories260K converted), REQUESTS (32), BATCH (32), NEW_TOKENS (32), ROUNDS (3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-build/tpinfer}
np=${NP:-2}
model=${MODEL:-llama-100m}
requests=${REQUESTS:-32}
batch=${BATCH:-32}
new=${NEW_TOKENS:-32}
rounds=${ROUNDS:-3}
[[ -x $bin ]] || { echo "no $bin: build first (scripts/build.sh)"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# model_args TP PP: the flags that select the model (converting the bundled one on first use).
model_args() {
  if [[ $model != stories260K ]]; then
    echo "--model configs/models/$model --dummy-weights --tokenizer configs/tokenizers/mistral"
    return
  fi
  local dir=build/models/stories260K-pp$2-tp$1
  /usr/bin/python3 scripts/convert_hf.py --is-current "$dir" 2>/dev/null ||
    /usr/bin/python3 scripts/convert_hf.py --quiet --model configs/models/stories260K \
      --tp "$1" --pp "$2" --dtype f32 --out "$dir"
  echo "--model $dir"
}

# The requests the multinode benchmark sends (the test helper's `many`).
/usr/bin/python3 tests/batch/batch_check.py many "$requests" "$new" "$out/in.jsonl"

layouts=("tp $np:$np:1:" "pp $np x tp 1, $np micro-batches:1:$np:" "pp $np x tp 1, one step in flight:1:$np:1")
declare -A runs
for ((r = 0; r < rounds; ++r)); do
  for layout in "${layouts[@]}"; do
    IFS=: read -r name tp pp depth <<<"$layout"
    rm -f "$out/out.jsonl"
    # shellcheck disable=SC2046  # model_args returns flags
    TPINFER_PP_MICROBATCHES=$depth scripts/mpirun.sh -np "$np" "$bin" $(model_args "$tp" "$pp") \
        --tp "$tp" --pp "$pp" --input "$out/in.jsonl" --output "$out/out.jsonl" \
        --batch-size "$batch" --ignore-eos --temperature 0 --progress-interval-s 0 \
        --metrics-json "$out/m.json" </dev/null >/dev/null 2>"$out/err" || { cat "$out/err"; exit 1; }
    gen=$(/usr/bin/python3 -c "import json; print(json.load(open('$out/m.json'))['generated_tokens_per_s'])")
    runs[$name]="${runs[$name]:-} $gen"
  done
done

echo "Host: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores; $np rank(s);" \
     "$model, $requests requests x $new new tokens, batch $batch; median of $rounds interleaved rounds; $(date -u +%F)"
echo
echo "| layout | generated tok/s (median) | runs | vs one step in flight |"
echo "|---|---|---|---|"
base=$(/usr/bin/python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" \
       ${runs["pp $np x tp 1, one step in flight"]})
for layout in "${layouts[@]}"; do
  name=${layout%%:*}
  /usr/bin/python3 - "$name" "$base" ${runs[$name]} <<'PY'
import statistics, sys
name, base, xs = sys.argv[1], float(sys.argv[2]), [float(x) for x in sys.argv[3:]]
med = statistics.median(xs)
print(f"| {name} | {med:.1f} | {' / '.join(f'{x:.1f}' for x in xs)} | {med / base:.2f}x |")
PY
done

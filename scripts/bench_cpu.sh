#!/usr/bin/env bash
# CPU backend benchmark (not a test): decode ms/token, tokens/s, prefill tokens/s and memory per
# rank for the bundled model at tp 1, 2 and 4, and for a Qwen3-0.6B-shaped model with random
# bf16 weights at tp 1 and 2. Prints a Markdown table. Needs a build (scripts/build.sh).
# Usage: scripts/bench_cpu.sh [NEW_TOKENS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-128}
bin=build/tpinfer
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for tp in 1 2 4; do
  dir=build/models/stories260K-tp$tp
  /usr/bin/python3 scripts/convert_hf.py --is-current "$dir" ||
    /usr/bin/python3 scripts/convert_hf.py --quiet \
      --model configs/models/stories260K --tp $tp --dtype f32 --out "$dir"
done

row() {  # label np args...
  local label=$1 np=$2
  shift 2
  scripts/mpirun.sh -np "$np" "$bin" "$@" --ignore-eos --temperature 0 --stream=false \
      --metrics-json "$out/m.json" >/dev/null 2>"$out/err" || { cat "$out/err"; exit 1; }
  /usr/bin/python3 - "$label" "$out/m.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[2]))
mem = max(r["allocated_bytes"] for r in m["memory_per_rank"]) / 2**20
print(f"| {sys.argv[1]} | {m['tp']} | {m['prompt_tokens']} | {m['generated_tokens']} | "
      f"{m['prefill_tokens_per_s']:.0f} | {m['decode_ms_per_token_mean']:.3f} | "
      f"{m['decode_ms_per_token_p50']:.3f} | {m['decode_tokens_per_s']:.1f} | {mem:.1f} |")
PY
}

echo "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores; $(date -u +%F)"
echo
echo "| model | tp | prompt tok | new tok | prefill tok/s | decode ms/tok (mean) | p50 | tok/s | MiB/rank |"
echo "|---|---|---|---|---|---|---|---|---|"
prompt="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
for tp in 1 2 4; do
  row "stories260K f32" $tp --model build/models/stories260K-tp$tp --prompt "$prompt" --max-new-tokens "$n"
done
for tp in 1 2; do
  row "Qwen3-0.6B shape, dummy bf16" $tp --model configs/models/qwen3-0.6b --dummy-weights \
      --tokenizer configs/tokenizers/qwen3 --prompt "$prompt" --max-new-tokens 16
done

#!/usr/bin/env bash
# Single-GPU benchmark of the CUDA backend at tp=1 on random weights of real model shapes
# (configs/models/qwen3-4b and configs/models/mistral-7b): decode ms/token at batch 1 (mean and
# p50), prefill tokens/s for 26-, 512- and 2048-token prompts, time to first token (from the
# request and from process launch), peak memory, and the bandwidth bound: bf16 weight bytes read
# per decode step / device read bandwidth measured by tpinfer-cuda-bandwidth.
#
#   scripts/bench_gpu.sh [--build DIR] [--models "qwen3-4b mistral-7b"] [--new-tokens N]
#                        [--out DIR] [--gemv-bench]
#
# Exits 77 ("SKIPPED: ...") when no CUDA device is usable. Results: a table on stdout and
# $OUT/summary.json (plus each run's metrics JSON and log).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
MODELS="qwen3-4b mistral-7b"
NEW_TOKENS=128
OUT=""
GEMV_BENCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --new-tokens) NEW_TOKENS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --gemv-bench) GEMV_BENCH=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench_gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
BUILD=$(cd "$BUILD" && pwd)
OUT=${OUT:-$BUILD/bench-gpu}
mkdir -p "$OUT"

find_bin() {  # the binary in the build root or in its src/ (where add_executable in src/ puts it)
  for p in "$BUILD/$1" "$BUILD/src/$1" "$BUILD/kernels/cuda/$1"; do
    if [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  echo "bench_gpu.sh: $1 not found under $BUILD (build with -DTPINFER_CUDA=ON first)" >&2
  exit 2
}
TPINFER=$(find_bin tpinfer)
BANDWIDTH=$(find_bin tpinfer-cuda-bandwidth)

# 1. Device bandwidth (also the GPU check: the tool exits 77 without a device).
set +e
"$BANDWIDTH" --mib 2048 --iters 20 > "$OUT/bandwidth.txt" 2>&1
rc=$?
set -e
if [ $rc -eq 77 ]; then
  echo "SKIPPED: $(tail -n 1 "$OUT/bandwidth.txt")"
  exit 77
elif [ $rc -ne 0 ]; then
  cat "$OUT/bandwidth.txt" >&2
  exit $rc
fi
cat "$OUT/bandwidth.txt"
tail -n 1 "$OUT/bandwidth.txt" > "$OUT/bandwidth.json"

if [ $GEMV_BENCH -eq 1 ]; then
  "$(find_bin tpinfer-cuda-gemv-bench)" | tee "$OUT/gemv_bench.txt"
fi

# "the" and " the" are one token each in both vocabularies (Mistral's splits "hello" in two), so
# N words make an N-token prompt (Mistral adds BOS; the metrics report the real count).
prompt_of() { python3 -c "import sys; n=int(sys.argv[1]); print('the' + ' the' * (n - 1))" "$1"; }

run() {  # run NAME MODEL PROMPT_TOKENS NEW_TOKENS [extra tpinfer flags]
  local name=$1 model=$2 n_prompt=$3 n_new=$4
  shift 4
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$TPINFER" --model "$ROOT/configs/models/$model" --dummy-weights --backend cuda "$@" \
      --prompt "$(prompt_of "$n_prompt")" --max-new-tokens "$n_new" --ignore-eos \
      --temperature 0 --max-seq $((n_prompt + n_new + 64)) --stream=false \
      --metrics-json "$OUT/$name.json" > "$OUT/$name.log" 2>&1; then
    echo "bench_gpu.sh: run $name failed; its log ($OUT/$name.log) ends with:" >&2
    tail -n 20 "$OUT/$name.log" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  python3 - "$OUT/$name.json" "$t0" "$t1" <<'PY'
import json, sys
path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
m = json.load(open(path))
m["wall_s"] = t1 - t0
json.dump(m, open(path, "w"), indent=2)
PY
}

for model in $MODELS; do
  echo "== $model: decode (26-token prompt, $NEW_TOKENS new tokens)"
  run "$model-decode" "$model" 26 "$NEW_TOKENS"
  for n in 512 2048; do
    echo "== $model: prefill $n tokens"
    run "$model-prefill$n" "$model" "$n" 1
  done
done

# int8 weights (blocks of 32, dummy values): decode of the first model, next to its bf16 figure.
int8_model=${MODELS%% *}
echo "== $int8_model: int8 decode (26-token prompt, $NEW_TOKENS new tokens)"
run "$int8_model-int8-decode" "$int8_model" 26 "$NEW_TOKENS" --dtype int8

python3 - "$ROOT" "$OUT" $MODELS <<'PY'
import json, os, sys
root, out, models = sys.argv[1], sys.argv[2], sys.argv[3:]
bw = json.load(open(os.path.join(out, "bandwidth.json")))
read_bw = bw["read_GBps"] * 1e9

def weight_bytes_per_token(cfg):
    """bf16 bytes of weights one decode step reads: every layer, the final norm and the lm_head
    (the embedding matrix itself when tied); the embedding lookup reads one row. MoE layers
    (Qwen3-MoE, Mixtral): the router and the k active experts only (the decode bound counts
    active parameters; every layer counted sparse, as in the bundled shapes)."""
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    inter, vocab = cfg["intermediate_size"], cfg["vocab_size"]
    qk_norm = 2 * hd if cfg.get("model_type") in ("qwen3", "qwen3_moe") else 0
    experts = cfg.get("num_experts") or cfg.get("num_local_experts") or 0
    if experts:
        width = cfg.get("moe_intermediate_size") or inter
        mlp = cfg["num_experts_per_tok"] * 3 * h * width + experts * h
    else:
        mlp = 3 * h * inter
    layer = h * nh * hd + 2 * h * nkv * hd + nh * hd * h + mlp + 2 * h + qk_norm
    return 2 * (layers * layer + h + vocab * h)

def fmt_bytes(b):
    return f"{b / 2**30:.2f} GiB"

summary = {"device": bw["device"], "read_GBps": bw["read_GBps"],
           "d2d_copy_GBps": bw["d2d_copy_GBps"], "models": {}}
print()
print(f"device: {bw['device']}; read bandwidth {bw['read_GBps']:.0f} GB/s, "
      f"D2D copy {bw['d2d_copy_GBps']:.0f} GB/s (read + write)")
hdr = (f"{'model':<12} {'decode ms/tok':>14} {'p50':>8} {'bound':>8} {'of bound':>9} "
       f"{'prefill tok/s (26/512/2048)':>30} {'ttft ms':>9} {'launch->1st ms':>15} {'peak mem':>10}")
print(hdr)
print("-" * len(hdr))
for model in models:
    cfg = json.load(open(os.path.join(root, "configs/models", model, "config.json")))
    dec = json.load(open(os.path.join(out, f"{model}-decode.json")))
    pre = {n: json.load(open(os.path.join(out, f"{model}-prefill{n}.json"))) for n in (512, 2048)}
    wbytes = weight_bytes_per_token(cfg)
    bound_ms = wbytes / read_bw * 1e3
    mean = dec["decode_ms_per_token_mean"]
    rates = [dec["prefill_tokens_per_s"], pre[512]["prefill_tokens_per_s"],
             pre[2048]["prefill_tokens_per_s"]]
    peak = max(m.get("peak_memory_bytes", 0) for m in [dec, *pre.values()])
    launch = dec.get("launch_to_first_token_ms", float("nan"))
    print(f"{model:<12} {mean:>14.3f} {dec['decode_ms_per_token_p50']:>8.3f} {bound_ms:>8.3f} "
          f"{(bound_ms / mean * 100 if mean else 0):>8.0f}% "
          f"{'/'.join(f'{r:.0f}' for r in rates):>30} {dec['ttft_ms']:>9.1f} {launch:>15.1f} "
          f"{fmt_bytes(peak):>10}")
    summary["models"][model] = {
        "weight_bytes_read_per_token": wbytes,
        "decode_bound_ms_per_token": bound_ms,
        "decode_ms_per_token_mean": mean,
        "decode_ms_per_token_p50": dec["decode_ms_per_token_p50"],
        "fraction_of_bound": bound_ms / mean if mean else None,
        "prompt_tokens": [dec["prompt_tokens"], pre[512]["prompt_tokens"], pre[2048]["prompt_tokens"]],
        "prefill_tokens_per_s": rates,
        "ttft_ms": dec["ttft_ms"],
        "launch_to_first_token_ms": launch,
        "process_wall_s": dec.get("wall_s"),
        "peak_memory_bytes": peak,
        "memory_per_rank": dec.get("memory_per_rank"),
    }
i8 = json.load(open(os.path.join(out, f"{models[0]}-int8-decode.json")))
i8_mean = i8["decode_ms_per_token_mean"]
# int8 weights: 1 byte per weight of the linear layers + an f32 scale per 32 (1.125 bytes)
# against bf16's 2; the tied or bf16 embedding rows and norms stay as they were.
print(f"{models[0] + ' int8':<12} {i8_mean:>14.3f} {i8['decode_ms_per_token_p50']:>8.3f} "
      f"{'':>8} {'':>9} {'':>30} {i8['ttft_ms']:>9.1f} {'':>15} "
      f"{fmt_bytes(i8.get('peak_memory_bytes', 0)):>10}   (bf16 {summary['models'][models[0]]['decode_ms_per_token_mean']:.3f} ms/tok)")
summary["int8"] = {"model": models[0], "decode_ms_per_token_mean": i8_mean,
                   "peak_memory_bytes": i8.get("peak_memory_bytes")}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print()
print("bound = bf16 weight bytes read per decode step / read bandwidth; 'of bound' = bound / "
      "measured (100% = bandwidth-limited)")
print(f"details: {out}/summary.json and the per-run *.json / *.log")
PY

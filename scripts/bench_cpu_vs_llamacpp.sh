#!/usr/bin/env bash
# tpinfer's CPU backend next to llama.cpp (benchmark, not a test): same Llama shapes with random
# bf16 weights in both, same thread count, interleaved repeats (llama.cpp, then tpinfer, per
# repeat and measure), medians. Prints one Markdown table with ratios, the machine's measured
# read bandwidth and each engine's decode as a percentage of the bandwidth bound
# (bandwidth / weight bytes read per token).
#
# llama.cpp is built from the llama-cpp-python source package on PyPI (pip download
# --no-binary; its vendored llama.cpp, cmake, GGML_NATIVE=ON) inside WORK, never committed; the
# GGUF files are written there with the gguf Python package (in a venv there).
#
#   scripts/bench_cpu_vs_llamacpp.sh            # both shapes, 3 repeats, 2 threads
#   SHAPES=100m REPEATS=5 scripts/bench_cpu_vs_llamacpp.sh
#
# Environment: BIN (build/tpinfer), WORK (build/llamacpp), THREADS (nproc), REPEATS (3),
# SHAPES ("100m 1.1b"), BATCHES ("1 8 32"), JOBS (2, for the llama.cpp build),
# LLAMA_CPP_PYTHON (the PyPI version, 0.3.36), SETUP_ONLY=1 (build and write models, no runs). Measures: pp64, pp512 (prefill tok/s), tg128
# (decode tok/s after a short prompt), and batched generation: B sequences x 128 new tokens,
# generated tok/s with prefill included (llama-batched-bench -npp 16 -ntg 128 -npl B; tpinfer
# --input with B prompts of about 16 tokens, --batch-size B).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-build/tpinfer}
work=${WORK:-build/llamacpp}
threads=${THREADS:-$(env -u OMP_NUM_THREADS nproc)}
repeats=${REPEATS:-3}
shapes=${SHAPES:-100m 1.1b}
batches=${BATCHES:-1 8 32}
version=${LLAMA_CPP_PYTHON:-0.3.36}
[[ -x $bin ]] || { echo "no $bin: build first (scripts/build.sh)"; exit 1; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
py=$work/venv/bin/python

# --- llama.cpp from the PyPI source package ----------------------------------------------------
if [[ ! -x $py ]]; then
  python3 -m venv "$work/venv"
  "$py" -m pip install --quiet numpy gguf
fi
lc=$work/llama-build/bin
if [[ ! -x $lc/llama-bench || ! -x $lc/llama-batched-bench ]]; then
  if [[ ! -d $work/src/llama_cpp_python-$version ]]; then
    "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$version" -d "$work/src"
    tar -xzf "$work/src/llama_cpp_python-$version.tar.gz" -C "$work/src"
  fi
  cmake -S "$work/src/llama_cpp_python-$version/vendor/llama.cpp" -B "$work/llama-build" \
      -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_SERVER=OFF >"$work/cmake.log" 2>&1
  cmake --build "$work/llama-build" -j "${JOBS:-2}" \
      --target llama-bench llama-batched-bench >"$work/build.log" 2>&1
fi

# --- shapes: a tpinfer config directory and a bf16 GGUF each --------------------------------------
# shape NAME -> "hidden layers heads kv_heads ffn"
shape() {
  case $1 in
    100m) echo "768 8 12 4 2048" ;;  # configs/models/llama-100m
    1.1b) echo "2048 22 32 4 5632" ;;  # TinyLlama-1.1B's shape
    *) echo "unknown shape '$1' (expected 100m or 1.1b)" >&2; exit 1 ;;
  esac
}
for s in $shapes; do
  read -r hidden layers heads kv ffn < <(shape "$s")
  dir=$work/models/llama-$s
  mkdir -p "$dir"
  [[ -f $dir/model-bf16.gguf ]] && continue
  "$py" - "$dir" "$hidden" "$layers" "$heads" "$kv" "$ffn" <<'PY'
import json, sys
import numpy as np
import gguf

d, hidden, layers, heads, kv, ffn = sys.argv[1], *map(int, sys.argv[2:])
vocab, hd = 32000, hidden // heads
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
       "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
       "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
       "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
       "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
       "eos_token_id": 2, "torch_dtype": "bfloat16"}
json.dump(cfg, open(f"{d}/config.json", "w"), indent=1)

w = gguf.GGUFWriter(f"{d}/model-bf16.gguf", "llama")
w.add_context_length(4096)
w.add_embedding_length(hidden)
w.add_block_count(layers)
w.add_feed_forward_length(ffn)
w.add_head_count(heads)
w.add_head_count_kv(kv)
w.add_rope_dimension_count(hd)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_freq_base(10000.0)
w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
w.add_tokenizer_model("llama")
w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<t{i}>" for i in range(3, vocab)])
w.add_token_scores([0.0] * vocab)
w.add_token_types([2, 3, 3] + [1] * (vocab - 3))
w.add_bos_token_id(1)
w.add_eos_token_id(2)
rng = np.random.default_rng(0)

def bf16(rows, cols):  # random normal * 0.02, truncated to bf16, as raw bytes
    x = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).view(np.uint32)
    return (x >> 16).astype(np.uint16).view(np.uint8)

def add(name, rows, cols):
    w.add_tensor(name, bf16(rows, cols), raw_dtype=gguf.GGMLQuantizationType.BF16)

add("token_embd.weight", vocab, hidden)
w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
add("output.weight", vocab, hidden)
for i in range(layers):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", np.ones(hidden, dtype=np.float32))
    w.add_tensor(p + "ffn_norm.weight", np.ones(hidden, dtype=np.float32))
    add(p + "attn_q.weight", heads * hd, hidden)
    add(p + "attn_k.weight", kv * hd, hidden)
    add(p + "attn_v.weight", kv * hd, hidden)
    add(p + "attn_output.weight", hidden, heads * hd)
    add(p + "ffn_gate.weight", ffn, hidden)
    add(p + "ffn_up.weight", ffn, hidden)
    add(p + "ffn_down.weight", hidden, ffn)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
PY
done

# --- read bandwidth: THREADS threads summing a 1 GiB array, best of 5 ------------------------------
if [[ ! -x $work/readbw ]]; then
  cat >"$work/readbw.cpp" <<'CPP'
#include <omp.h>
#include <chrono>
#include <cstdio>
#include <vector>
int main() {
  const size_t n = size_t(1) << 28;  // 1 GiB of floats
  std::vector<float> a(n, 1.0f);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    float s = 0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for simd reduction(+ : s) schedule(static)
    for (size_t i = 0; i < n; ++i) s += a[i];
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s != float(n) && s < 0) std::printf("!");
    best = std::max(best, n * 4.0 / dt / 1e9);
  }
  std::printf("%.1f\n", best);
}
CPP
  g++ -O3 -march=native -fopenmp "$work/readbw.cpp" -o "$work/readbw"
fi

[[ ${SETUP_ONLY:-0} == 1 ]] && { echo "set up in $work"; exit 0; }

# --- the runs ------------------------------------------------------------------------------------
res=$work/results.tsv  # shape measure engine value
: >"$res"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
words() { /usr/bin/python3 -c "print(' '.join(['the'] * $1))"; }

llama_bench() {  # shape measure args...
  local s=$1 m=$2
  shift 2
  "$lc/llama-bench" -m "$work/models/llama-$s/model-bf16.gguf" -t "$threads" -r 1 -o json "$@" \
      2>/dev/null | "$py" -c "import json,sys; print(json.load(sys.stdin)[0]['avg_ts'])" |
      sed "s/^/$s\t$m\tllama.cpp\t/" >>"$res"
}
llama_batched() {  # shape B
  "$lc/llama-batched-bench" -m "$work/models/llama-$1/model-bf16.gguf" -t "$threads" \
      -c $((($2 + 1) * 160)) -b 2048 -ub 512 -npp 16 -ntg 128 -npl "$2" \
      --output-format jsonl 2>/dev/null | grep '^{' | tail -1 |
      "$py" -c "import json,sys; r=json.loads(sys.stdin.read()); print(r['pl']*r['tg']/r['t'])" |
      sed "s/^/$1\tbatch$2\tllama.cpp\t/" >>"$res"
}
tpinfer() {  # shape measure metric args...
  local s=$1 m=$2 key=$3
  shift 3
  rm -f "$tmp/m.json"
  TPINFER_LAUNCH_QUIET=1 OMP_NUM_THREADS=$threads scripts/mpirun.sh -np 1 "$bin" \
      --model "$work/models/llama-$s" --dummy-weights --tokenizer configs/tokenizers/mistral \
      --threads "$threads" --ignore-eos --temperature 0 --stream=false --log-level warn \
      --metrics-json "$tmp/m.json" "$@" </dev/null >/dev/null 2>"$tmp/err" ||
      { cat "$tmp/err"; exit 1; }
  # A run without the figure (seen once under heavy load) is reported and left out of the median.
  /usr/bin/python3 -c "import json; v = json.load(open('$tmp/m.json')).get('$key')
print(v) if v is not None else print('no $key in the metrics of tpinfer $s $m', file=__import__('sys').stderr)" |
      sed "s/^/$s\t$m\ttpinfer\t/" >>"$res"
}
tpinfer_batched() {  # shape B
  /usr/bin/python3 - "$2" "$tmp/in.jsonl" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": i, "prompt": " ".join(["the"] * 15), "max_new_tokens": 128}) + "\n")
PY
  tpinfer "$1" "batch$2" generated_tokens_per_s --input "$tmp/in.jsonl" \
      --output "$tmp/out.jsonl" --batch-size "$2" --progress-interval-s 0
}

bw=$("$work/readbw")
for ((r = 1; r <= repeats; ++r)); do
  for s in $shapes; do
    for pp in 64 512; do
      llama_bench "$s" "pp$pp" -p "$pp" -n 0
      tpinfer "$s" "pp$pp" prefill_tokens_per_s --prompt "$(words $((pp - 1)))" --max-new-tokens 1
    done
    llama_bench "$s" tg128 -p 0 -n 128
    tpinfer "$s" tg128 decode_tokens_per_s --prompt "$(words 8)" --max-new-tokens 128
    for b in $batches; do
      llama_batched "$s" "$b"
      tpinfer_batched "$s" "$b"
    done
  done
done
bw2=$("$work/readbw")

# --- the table -----------------------------------------------------------------------------------
echo "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(env -u OMP_NUM_THREADS nproc) cores," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); $threads threads per engine" \
     "(tpinfer: 1 rank x $threads); medians of $repeats interleaved repeats; $(date -u +%F)"
echo "Read bandwidth ($threads threads, best of 5, before / after): $bw / $bw2 GB/s." \
     "llama.cpp from llama-cpp-python $version (GGML_NATIVE); random bf16 weights in both."
echo
/usr/bin/python3 - "$res" "$bw" "$shapes" "$batches" <<'PY'
import statistics, sys
from collections import defaultdict
res, bw, shapes, batches = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
vals = defaultdict(list)
for line in open(res):
    s, m, e, v = line.split("\t")
    vals[(s, m, e)].append(float(v))
dims = {"100m": (768, 8, 12, 4, 2048), "1.1b": (2048, 22, 32, 4, 5632)}
print("| shape | measure (tok/s) | llama.cpp bf16 | tpinfer bf16 | tpinfer / llama.cpp |")
print("|---|---|---|---|---|")
for s in shapes:
    h, L, H, kv, f = dims[s]
    hd = h // H
    # Weight bytes read per decoded token: every layer matrix and the LM head (bf16).
    per_tok = 2 * (L * (h * (H + 2 * kv) * hd + H * hd * h + 3 * h * f) + 32000 * h)
    bound = bw * 1e9 / per_tok
    for m in ["pp64", "pp512", "tg128"] + [f"batch{b}" for b in batches]:
        a = vals.get((s, m, "llama.cpp"))
        b = vals.get((s, m, "tpinfer"))
        ma = statistics.median(a) if a else float("nan")
        mb = statistics.median(b) if b else float("nan")
        label = m if not m.startswith("batch") else f"batch {m[5:]} generated (incl. prefill)"
        print(f"| {s} | {label} | {ma:.1f} | {mb:.1f} | {mb / ma:.2f}x |")
    a = statistics.median(vals.get((s, "tg128", "llama.cpp")) or [float("nan")])
    b = statistics.median(vals.get((s, "tg128", "tpinfer")) or [float("nan")])
    print(f"| {s} | decode bound {bound:.1f} tok/s ({per_tok / 1e6:.0f} MB/token): % reached "
          f"| {100 * a / bound:.0f}% | {100 * b / bound:.0f}% | |")
PY

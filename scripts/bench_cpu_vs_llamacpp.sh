#!/usr/bin/env bash
# tpinfer's CPU backend next to llama.cpp (benchmark, not a test): same shapes (Llama; Qwen3-MoE,
# llama.cpp's qwen3moe) with random weights in both, same thread count, interleaved repeats
# (llama.cpp, then tpinfer, per repeat and measure), medians. Prints one Markdown table with
# ratios: bf16 weights (tpinfer bf16 vs llama.cpp BF16) and int8 weights (tpinfer --dtype int8
# vs llama.cpp Q8_0; skipped with a note when this tpinfer does not accept --dummy-weights
# --dtype int8), the machine's measured read
# bandwidth and each engine's decode as a percentage of the bandwidth bound (bandwidth / weight
# bytes read per token; for the MoE shape the active-parameter bound: the router and the k routed
# experts of each layer, not all E).
#
# llama.cpp is built from the llama-cpp-python source package on PyPI (pip download
# --no-binary; its vendored llama.cpp, cmake, GGML_NATIVE=ON) inside WORK, never committed; the
# GGUF files are written there with the gguf Python package (in a venv there). An existing WORK
# (WORK=/path/of/an/earlier/run) is reused: nothing is rebuilt or rewritten.
#
#   scripts/bench_cpu_vs_llamacpp.sh            # both Llama shapes and dtypes, 3 repeats, nproc threads
#   SHAPES=30b-a3b MEASURES=tg128 scripts/bench_cpu_vs_llamacpp.sh   # Qwen3-30B-A3B, 4 of 48 layers
#   SHAPES=1.1b DTYPES=bf16 REPEATS=1 MEASURES="tg128 batch" BATCHES=8 scripts/bench_cpu_vs_llamacpp.sh
#   QUICK=1 scripts/bench_cpu_vs_llamacpp.sh    # 1 repeat, 1.1b, tg128 + pp64 + batch 8 only
#
# Environment: BIN (build/tpinfer), BENCH_GEMM (build/tpinfer-bench-gemm, the bandwidth probe),
# WORK (build/llamacpp), THREADS (nproc), REPEATS (3), SHAPES ("100m 1.1b"; also 30b-a3b, the
# Qwen3-30B-A3B shape with MOE_LAYERS (4) of its 48 layers: 6.2 GB BF16, 3.3 GB Q8_0), DTYPES
# ("bf16 int8"), MEASURES ("pp64 pp512 tg128 batch"), BATCHES ("1 8 32"), JOBS (2, for the
# llama.cpp build), LLAMA_CPP_PYTHON (the PyPI version, 0.3.36), SETUP_ONLY=1 (build and write
# models, no runs). Measures: pp64, pp512 (prefill tok/s), tg128 (decode tok/s after a short
# prompt), and batched generation: B sequences x 128 new tokens, generated tok/s with prefill
# included (llama-batched-bench -npp 16 -ntg 128 -npl B; tpinfer --input with B prompts of about
# 16 tokens, --batch-size B). Read bandwidth: tpinfer-bench-gemm --bw, THREADS threads pinned one
# per core, the fastest 64 MiB window of 20 passes over 1 GiB (best of 1, 2 and 8 streams per
# thread), before and after the runs; the higher figure is the bound.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${BIN:-build/tpinfer}
bench_gemm=${BENCH_GEMM:-build/tpinfer-bench-gemm}
work=${WORK:-build/llamacpp}
threads=${THREADS:-$(env -u OMP_NUM_THREADS nproc)}
if [[ ${QUICK:-0} == 1 ]]; then
  repeats=${REPEATS:-1} shapes=${SHAPES:-1.1b} measures=${MEASURES:-tg128 pp64 batch}
  batches=${BATCHES:-8}
fi
repeats=${REPEATS:-${repeats:-3}}
shapes=${SHAPES:-${shapes:-100m 1.1b}}
dtypes=${DTYPES:-bf16 int8}
measures=${MEASURES:-${measures:-pp64 pp512 tg128 batch}}
batches=${BATCHES:-${batches:-1 8 32}}
version=${LLAMA_CPP_PYTHON:-0.3.36}
[[ -x $bin ]] || { echo "no $bin: build first (scripts/build.sh)"; exit 1; }
[[ -x $bench_gemm ]] || { echo "no $bench_gemm: build first (scripts/build.sh)"; exit 1; }
for d in $dtypes; do
  [[ $d == bf16 || $d == int8 ]] || { echo "DTYPES: expected bf16 and/or int8, found '$d'"; exit 1; }
done
for m in $measures; do
  case $m in pp64 | pp512 | tg128 | batch) ;; *)
    echo "MEASURES: expected pp64, pp512, tg128 or batch, found '$m'"; exit 1 ;;
  esac
done
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

# --- shapes: a tpinfer config directory and a GGUF per dtype (BF16; Q8_0 for int8) ----------------
# Dense Llama shapes are written from their dimensions; the MoE shape is configs/models/
# qwen3-30b-a3b with MOE_LAYERS of its 48 layers (the whole shape is 57 GiB in bf16). The GGUF is
# written from the directory's config.json, so both engines run the same shape.
moe_layers=${MOE_LAYERS:-4}
model_dir() {
  case $1 in
    30b-a3b) echo "$work/models/qwen3moe-30b-a3b-l$moe_layers" ;;
    *) echo "$work/models/llama-$1" ;;
  esac
}
write_config() {  # shape dir
  case $1 in
    100m) set -- "$2" 768 8 12 4 2048 ;;  # configs/models/llama-100m
    1.1b) set -- "$2" 2048 22 32 4 5632 ;;  # TinyLlama-1.1B's shape
    30b-a3b)
      /usr/bin/python3 - "$2" "$moe_layers" <<'PY'
import json, sys
cfg = json.load(open("configs/models/qwen3-30b-a3b/config.json"))
cfg["num_hidden_layers"] = int(sys.argv[2])
json.dump(cfg, open(f"{sys.argv[1]}/config.json", "w"), indent=1)
PY
      return ;;
    *) echo "unknown shape '$1' (expected 100m, 1.1b or 30b-a3b)" >&2; exit 1 ;;
  esac
  /usr/bin/python3 - "$@" <<'PY'
import json, sys
d, (hidden, layers, heads, kv, ffn) = sys.argv[1], map(int, sys.argv[2:])
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
       "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
       "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hidden // heads,
       "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
       "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
       "eos_token_id": 2, "torch_dtype": "bfloat16"}
json.dump(cfg, open(f"{d}/config.json", "w"), indent=1)
PY
}
gguf_name() { [[ $1 == int8 ]] && echo model-q8_0.gguf || echo model-bf16.gguf; }
for s in $shapes; do
  dir=$(model_dir "$s")
  mkdir -p "$dir"
  [[ -f $dir/config.json ]] || write_config "$s" "$dir"
  for d in $dtypes; do
  [[ -f $dir/$(gguf_name "$d") ]] && continue
  # llama.cpp's names: blk.N.attn_q/k/v/output, ffn_gate/up/down (dense) and, for qwen3moe,
  # attn_q_norm/attn_k_norm, the router ffn_gate_inp [E, hidden] and the stacked experts
  # ffn_gate_exps/ffn_up_exps [E, I, hidden], ffn_down_exps [E, hidden, I]. Tensors are streamed
  # to the file one at a time (a 4-layer Qwen3-MoE is 6 GB in BF16), each tiled from one random
  # block (only speed matters; the router's rows differ, so tokens route to varied experts).
  "$py" - "$dir" "$d" <<'PY'
import json, sys
import numpy as np
import gguf
import gguf.quants

d, dtype = sys.argv[1], sys.argv[2]
cfg = json.load(open(f"{d}/config.json"))
moe = cfg["model_type"] == "qwen3_moe"
hidden, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
hd = cfg.get("head_dim") or hidden // heads
q8 = dtype == "int8"
w = gguf.GGUFWriter(f"{d}/model-q8_0.gguf" if q8 else f"{d}/model-bf16.gguf",
                    "qwen3moe" if moe else "llama")
w.add_context_length(4096)
w.add_embedding_length(hidden)
w.add_block_count(layers)
w.add_feed_forward_length(cfg["intermediate_size"])
w.add_head_count(heads)
w.add_head_count_kv(kv)
w.add_key_length(hd)
w.add_value_length(hd)
w.add_rope_dimension_count(hd)
w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
w.add_rope_freq_base(cfg["rope_theta"])
if moe:
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.MOSTLY_BF16)
w.add_tokenizer_model("llama")
w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<t{i}>" for i in range(3, vocab)])
w.add_token_scores([0.0] * vocab)
w.add_token_types([2, 3, 3] + [1] * (vocab - 3))
w.add_bos_token_id(1)
w.add_eos_token_id(2)

# One random block of 65537 x 32 values (a prime count of Q8_0 blocks), as BF16 bytes and as
# Q8_0 blocks (32 int8 + an f16 scale, quantized by gguf-py); every matrix is tiled from it.
block = np.random.default_rng(0).standard_normal(65537 * 32, dtype=np.float32) * 0.02
t_q8, t_bf16 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.BF16
pool = {True: gguf.quants.quantize(block.reshape(-1, 32), t_q8).reshape(-1),
        False: (block.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)}[q8]
tensors = []  # (name, data thunk), written in order after the header

def matrix(name, *shape):  # shape in numpy order: [..., rows, cols]
    cols = shape[-1] * 2 if not q8 else shape[-1] // 32 * 34
    nbytes = int(np.prod(shape[:-1])) * cols
    w.add_tensor_info(name, (*shape[:-1], cols), np.dtype(np.uint8), nbytes,
                      raw_dtype=t_q8 if q8 else t_bf16)
    tensors.append(lambda: np.resize(pool, nbytes).reshape(*shape[:-1], cols))

def f32(name, *shape, value=None):  # norms (ones) and the router (random, kept F32)
    n = int(np.prod(shape))
    w.add_tensor_info(name, shape, np.dtype(np.float32), n * 4)
    tensors.append(lambda: (np.ones(n, np.float32) if value == 1 else
                            np.resize(block, n)).reshape(shape))

matrix("token_embd.weight", vocab, hidden)
f32("output_norm.weight", hidden, value=1)
matrix("output.weight", vocab, hidden)
for i in range(layers):
    p = f"blk.{i}."
    f32(p + "attn_norm.weight", hidden, value=1)
    f32(p + "ffn_norm.weight", hidden, value=1)
    matrix(p + "attn_q.weight", heads * hd, hidden)
    matrix(p + "attn_k.weight", kv * hd, hidden)
    matrix(p + "attn_v.weight", kv * hd, hidden)
    matrix(p + "attn_output.weight", hidden, heads * hd)
    if moe:
        E, I = cfg["num_experts"], cfg["moe_intermediate_size"]
        f32(p + "attn_q_norm.weight", hd, value=1)
        f32(p + "attn_k_norm.weight", hd, value=1)
        f32(p + "ffn_gate_inp.weight", E, hidden)
        matrix(p + "ffn_gate_exps.weight", E, I, hidden)
        matrix(p + "ffn_up_exps.weight", E, I, hidden)
        matrix(p + "ffn_down_exps.weight", E, hidden, I)
    else:
        ffn = cfg["intermediate_size"]
        matrix(p + "ffn_gate.weight", ffn, hidden)
        matrix(p + "ffn_up.weight", ffn, hidden)
        matrix(p + "ffn_down.weight", hidden, ffn)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()
for make in tensors:
    w.write_tensor_data(make())
w.close()
PY
  done
done

# --- read bandwidth: tpinfer-bench-gemm --bw (threads pinned one per core, the fastest 64 MiB
# window; whole passes gave low and scattered figures on a shared machine) -------------------------
readbw() {
  OMP_NUM_THREADS=$threads OMP_PROC_BIND=close OMP_PLACES=cores "$bench_gemm" --bw --repeats 20
}

[[ ${SETUP_ONLY:-0} == 1 ]] && { echo "set up in $work"; exit 0; }

# --- the runs ------------------------------------------------------------------------------------
res=$work/results.tsv  # shape measure engine dtype value
: >"$res"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
words() { /usr/bin/python3 -c "print(' '.join(['the'] * $1))"; }

# llama.cpp reads its weights into memory at load (-lm none: no mmap), as tpinfer does: with the
# default mmap, an MoE model's warm-up touches only the routed experts and the timed run would
# page in the rest (from disk, when the page cache has dropped the file).
llama_bench() {  # shape dtype measure args...
  local s=$1 d=$2 m=$3
  shift 3
  "$lc/llama-bench" -m "$(model_dir "$s")/$(gguf_name "$d")" -t "$threads" -r 1 -lm none \
      -o json "$@" \
      2>/dev/null | "$py" -c "import json,sys; print(json.load(sys.stdin)[0]['avg_ts'])" |
      sed "s/^/$s\t$m\tllama.cpp\t$d\t/" >>"$res" || echo "llama-bench $s $d $m failed" >&2
}
llama_batched() {  # shape dtype B
  "$lc/llama-batched-bench" -m "$(model_dir "$1")/$(gguf_name "$2")" -t "$threads" \
      -c $((($3 + 1) * 160)) -b 2048 -ub 512 -npp 16 -ntg 128 -npl "$3" -lm none \
      --output-format jsonl 2>/dev/null | grep '^{' | tail -1 |
      "$py" -c "import json,sys; r=json.loads(sys.stdin.read()); print(r['pl']*r['tg']/r['t'])" |
      sed "s/^/$1\tbatch$3\tllama.cpp\t$2\t/" >>"$res" || echo "llama-batched-bench $1 $2 $3 failed" >&2
}
tpinfer_run() {  # shape dtype args... (no figure: just the run)
  local s=$1 d=$2
  shift 2
  TPINFER_LAUNCH_QUIET=1 OMP_NUM_THREADS=$threads scripts/mpirun.sh -np 1 "$bin" \
      --model "$(model_dir "$s")" --dummy-weights --dtype "$d" \
      --tokenizer "configs/tokenizers/$([[ $s == 30b-a3b ]] && echo qwen3 || echo mistral)" \
      --threads "$threads" --ignore-eos --temperature 0 --stream=false --log-level warn "$@" \
      </dev/null >/dev/null 2>"$tmp/err"
}
tpinfer() {  # shape dtype measure metric args...
  local s=$1 d=$2 m=$3 key=$4
  shift 4
  rm -f "$tmp/m.json"
  tpinfer_run "$s" "$d" --metrics-json "$tmp/m.json" "$@" || { cat "$tmp/err"; exit 1; }
  # A run without the figure (seen once under heavy load) is reported and left out of the median.
  /usr/bin/python3 -c "import json; v = json.load(open('$tmp/m.json')).get('$key')
print(v) if v is not None else print('no $key in the metrics of tpinfer $s $d $m', file=__import__('sys').stderr)" |
      sed "s/^/$s\t$m\ttpinfer\t$d\t/" >>"$res"
}
tpinfer_batched() {  # shape dtype B
  /usr/bin/python3 - "$3" "$tmp/in.jsonl" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": i, "prompt": " ".join(["the"] * 15), "max_new_tokens": 128}) + "\n")
PY
  rm -f "$tmp/out.jsonl"  # a fresh output: a batch job skips the ids an output already holds
  tpinfer "$1" "$2" "batch$3" generated_tokens_per_s --input "$tmp/in.jsonl" \
      --output "$tmp/out.jsonl" --batch-size "$3" --progress-interval-s 0
}

# int8 rows only when this tpinfer takes --dummy-weights --dtype int8 (a one-layer, one-token run).
run_dtypes=""
note=""
for d in $dtypes; do
  if [[ $d == int8 ]] && ! tpinfer_run "$(set -- $shapes; echo "$1")" int8 --layers 1 \
      --prompt "the" --max-new-tokens 1; then
    note="int8 rows skipped: this tpinfer does not accept --dummy-weights --dtype int8 ($(head -c 200 "$tmp/err" | tr '\n' ' '))"
    continue
  fi
  run_dtypes+="$d "
done

bw=$(readbw)
for ((r = 1; r <= repeats; ++r)); do
  for s in $shapes; do
    for d in $run_dtypes; do
      for m in $measures; do
        case $m in
          pp64 | pp512)
            llama_bench "$s" "$d" "$m" -p "${m#pp}" -n 0
            tpinfer "$s" "$d" "$m" prefill_tokens_per_s --prompt "$(words $((${m#pp} - 1)))" \
                --max-new-tokens 1 ;;
          tg128)
            llama_bench "$s" "$d" tg128 -p 0 -n 128
            tpinfer "$s" "$d" tg128 decode_tokens_per_s --prompt "$(words 8)" --max-new-tokens 128 ;;
          batch)
            for b in $batches; do
              llama_batched "$s" "$d" "$b"
              tpinfer_batched "$s" "$d" "$b"
            done ;;
        esac
      done
    done
  done
done
bw2=$(readbw)

# --- the table -----------------------------------------------------------------------------------
echo "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(env -u OMP_NUM_THREADS nproc) cores," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); $threads threads per engine" \
     "(tpinfer: 1 rank x $threads); medians of $repeats interleaved repeats; $(date -u +%F)"
echo "Read bandwidth ($threads threads pinned, fastest 64 MiB window of 20 passes, best of 1/2/8" \
     "streams per thread; before / after):" \
     "$bw / $bw2 GB/s. llama.cpp from llama-cpp-python $version (GGML_NATIVE); random weights."
[[ -n $note ]] && echo "$note"
echo
dirs=""
for s in $shapes; do dirs+="$(model_dir "$s") "; done
/usr/bin/python3 - "$res" "$bw" "$bw2" "$shapes" "$batches" "$run_dtypes" "$measures" "$dirs" <<'PY'
import json, statistics, sys
from collections import defaultdict
res, bw1, bw2, shapes, batches, dtypes, measures, dirs = sys.argv[1:9]
bw = max(float(bw1), float(bw2))
shapes, batches, dtypes, measures = shapes.split(), batches.split(), dtypes.split(), measures.split()
cfgs = {s: json.load(open(f"{d}/config.json")) for s, d in zip(shapes, dirs.split())}
vals = defaultdict(list)
for line in open(res):
    s, m, e, d, v = line.rstrip("\n").split("\t")
    vals[(s, m, e, d)].append(float(v))
# Bytes per weight read in decode: bf16 2; llama.cpp Q8_0 34 per 32 (int8 + an f16 scale);
# tpinfer int8 36 per 32 (int8 + an f32 scale per block of 32).
bpw = {("bf16", "llama.cpp"): 2.0, ("bf16", "tpinfer"): 2.0,
       ("int8", "llama.cpp"): 34 / 32, ("int8", "tpinfer"): 36 / 32}
# An MoE router stays float: F32 in the GGUF (as llama.cpp's converter keeps ffn_gate_inp), bf16
# in tpinfer (its dummy weights' float dtype).
router_bytes = {"llama.cpp": 4.0, "tpinfer": 2.0}


def weights_read(c):
    """(matrix weights, router weights) one decoded token reads: every layer's attention, the
    dense MLP or the router and the k routed experts (the active-parameter count), the LM head."""
    h, L, H, kv = (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                   c["num_key_value_heads"])
    hd = c.get("head_dim") or h // H
    attn = h * (H + 2 * kv) * hd + H * hd * h
    if "num_experts" in c:
        mlp, router = c["num_experts_per_tok"] * 3 * h * c["moe_intermediate_size"], c["num_experts"] * h
    else:
        mlp, router = 3 * h * c["intermediate_size"], 0
    return L * (attn + mlp) + c["vocab_size"] * h, L * router
other = {"bf16": "llama.cpp BF16", "int8": "llama.cpp Q8_0"}
mine = {"bf16": "tpinfer bf16", "int8": "tpinfer int8"}
head = "| shape | measure (tok/s) |"
for d in dtypes:
    head += f" {other[d]} | {mine[d]} | ratio |"
print(head)
print("|---|---|" + "---|---|---|" * len(dtypes))
med = lambda k: statistics.median(vals[k]) if vals.get(k) else float("nan")
rows = []
for m in measures:
    rows += [f"batch{b}" for b in batches] if m == "batch" else [m]
for s in shapes:
    n_w, n_router = weights_read(cfgs[s])
    for m in rows:
        label = m if not m.startswith("batch") else f"batch {m[5:]} generated (incl. prefill)"
        line = f"| {s} | {label} |"
        for d in dtypes:
            a, b = med((s, m, "llama.cpp", d)), med((s, m, "tpinfer", d))
            line += f" {a:.1f} | {b:.1f} | {b / a:.2f}x |"
        print(line)
    if "tg128" in rows:
        line = f"| {s} | tg128, % of the decode bound ({bw:.1f} GB/s) |"
        for d in dtypes:
            cells = []
            for e in ("llama.cpp", "tpinfer"):
                bound = bw * 1e9 / (n_w * bpw[(d, e)] + n_router * router_bytes[e])
                cells.append(f"{100 * med((s, 'tg128', e, d)) / bound:.0f}% of {bound:.1f}")
            line += f" {cells[0]} | {cells[1]} | |"
        print(line)
PY

#!/usr/bin/env bash
# The whole GPU verification as one command, from the simplest layer to the whole job, each step
# under its own time limit so that the first failing step names the layer that broke:
#   device     nvidia-smi and the device's copy bandwidth (the CUDA runtime works at all)
#   ops        every CUDA op against the CPU backend (test_cuda_ops, not attention or graphs)
#   attention  prefill and flash-decoding attention against the CPU backend
#   graphs     CUDA-graph capture, replay, refusals and capture_abort
#   nccl       the NCCL communicator (np 1 here; np 2 needs two GPUs and skips on one)
#   engine     the whole Engine against the CPU backend: np 1 (graphs) and np 2 sharing the GPU
#   e2e        tpinfer --backend cuda on the bundled model: greedy ids against the CPU backend
#              and the golden, graphs on and off; then batch mode (8 requests, 4 slots)
#   bench      scripts/bench_gpu.sh (decode, prefill, launch to first token, peak memory)
#   memcheck   compute-sanitizer memcheck over test_cuda_ops (when the tool is there)
# These are the tests `ctest -L cuda` runs, in that order, plus the e2e run and the benchmark.
#
#   scripts/gpu_check.sh [--build DIR | --bundle DIR|TARBALL] [--out DIR] [--deadline SECONDS]
#                        [--without-gpu]
#
# --build DIR (default build-gpu): binaries built there, or built now for this GPU's architecture
#   (needs the build dependencies). --bundle: a folder or .tar.xz from scripts/gpu_bundle.sh, for
#   a machine with the driver, cuBLAS and NCCL only. --deadline (default 540): steps are cut so
#   that the whole check ends by then. --without-gpu: on a machine without a GPU, run every step
#   anyway (each must skip cleanly) instead of stopping at the first. Writes report.txt, report.json and one log per step under
#   --out (default build-gpu/check); prints the report last. Exit: 0 all passed, 1 a step failed,
#   77 no usable GPU.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build-gpu
BUNDLE=""
OUTDIR=""
DEADLINE=540
WITHOUT_GPU=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --bundle) BUNDLE=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --without-gpu) WITHOUT_GPU=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
START=$(date +%s)
OUTDIR=${OUTDIR:-$BUILD/check}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
REPORT=$OUTDIR/report.txt
: >"$OUTDIR/steps.tsv"

say() { echo "gpu_check: $*" | tee -a "$OUTDIR/check.log" >&2; }
elapsed() { echo $(($(date +%s) - START)); }

# --- where the binaries, models and libraries are ------------------------------------------------
if [ -n "$BUNDLE" ]; then
  if [ -f "$BUNDLE" ]; then  # a tarball: unpack beside the output
    mkdir -p "$OUTDIR/unpacked"
    tar -xJf "$BUNDLE" -C "$OUTDIR/unpacked" 2>/dev/null ||
      python3 -m tarfile -e "$BUNDLE" "$OUTDIR/unpacked" || { say "cannot unpack $BUNDLE"; exit 2; }
    BUNDLE=$(dirname "$(find "$OUTDIR/unpacked" -name env.sh | head -n 1)")
  fi
  # shellcheck disable=SC1091
  source "$BUNDLE/env.sh"
  BIN=$BUNDLE/bin
  MODELS=$TPI_BUNDLE_MODELS
else
  BIN=$BUILD/bin-gpu
  MODELS=$BUILD/test-models
  if [ ! -x "$BUILD/tpinfer" ]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
    say "building for sm_${cap:-90} in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTPINFER_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="${cap:-90}" >"$OUTDIR/configure.log" 2>&1 &&
      cmake --build "$BUILD" -j "$(nproc)" --target tpinfer test_cuda_ops test_cuda_engine \
        test_nccl_comm tpinfer-cuda-bandwidth tpinfer-cuda-gemv-bench >"$OUTDIR/build.log" 2>&1 ||
      { say "build failed: see $OUTDIR/configure.log and build.log"; tail -n 30 "$OUTDIR/build.log"; exit 1; }
  fi
  mkdir -p "$BIN"
  for t in tpinfer test_cuda_ops test_cuda_engine test_nccl_comm tpinfer-cuda-bandwidth \
           tpinfer-cuda-gemv-bench; do
    ln -sf "$(find "$BUILD" -path "$BIN" -prune -o -type f -name "$t" -perm -u+x -print | head -n 1)" "$BIN/$t"
  done
  for tp in 1 2; do
    python3 "$ROOT/scripts/convert_hf.py" --is-current "$MODELS/stories260K-tp$tp" ||
      python3 "$ROOT/scripts/convert_hf.py" --quiet --model "$ROOT/configs/models/stories260K" \
        --tp "$tp" --dtype f32 --out "$MODELS/stories260K-tp$tp"
    python3 "$ROOT/scripts/convert_hf.py" --is-current "$MODELS/stories260K-int8-tp$tp" ||
      python3 "$ROOT/scripts/convert_hf.py" --quiet --model "$ROOT/configs/models/stories260K" \
        --tp "$tp" --dtype int8 --out "$MODELS/stories260K-int8-tp$tp"
  done
fi

# cuBLAS and NCCL come from the machine: the CUDA toolkit, or the pip wheels a framework brought.
missing_libs() { ldd "$BIN/tpinfer" 2>/dev/null | awk '/not found/ {print $1}'; }
if [ -n "$(missing_libs)" ]; then
  pydirs=$(python3 - 2>/dev/null <<'PY'
import importlib, os
for m in ("nvidia.cublas", "nvidia.nccl", "nvidia.cuda_runtime", "nvidia.cu13", "nvidia.cu12"):
    try:
        for p in importlib.import_module(m).__path__:
            if os.path.isdir(os.path.join(p, "lib")):
                print(os.path.join(p, "lib"))
    except Exception:
        pass
PY
)
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $pydirs; do
    [ -d "$d" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
  done
  for lib in $(missing_libs); do  # last resort: look for the file itself
    found=$(find /usr/local /opt /usr/lib -name "$lib" -print -quit 2>/dev/null)
    [ -n "$found" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$found")
  done
fi
ldd "$BIN/tpinfer" >"$OUTDIR/ldd.txt" 2>&1
if grep -q "not found" "$OUTDIR/ldd.txt"; then
  say "libraries not found: $(grep 'not found' "$OUTDIR/ldd.txt" | awk '{print $1}' | tr '\n' ' ')"
fi
export TPI_MODELS=$MODELS TPI_REPO_ROOT=$ROOT
MPIRUN=$ROOT/scripts/mpirun.sh

# --- steps ---------------------------------------------------------------------------------------
FIRST_FAILED=""
# step NAME LIMIT_S COMMAND...: runs under `timeout`, cut to what is left before the deadline.
step() {
  local name=$1 limit=$2 rc t0 t1 status
  shift 2
  local left=$((DEADLINE - $(elapsed) - 10))
  if [ "$left" -lt 15 ]; then
    printf '%s\tnot run (deadline)\t0\t\n' "$name" >>"$OUTDIR/steps.tsv"
    say "$name: not run, the deadline is near"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$name: running (limit ${limit}s)"
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  case $rc in
    0) status=passed ;;
    77) status=skipped ;;
    124|137) status="timed out after ${limit}s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  local secs
  secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')" 2>/dev/null || echo "?")
  local note
  note=$(grep -E "^(PASS|FAIL|SKIPPED|test cases|All tests passed|stories260K|qwen3|e2e|greedy)" \
           "$OUTDIR/$name.log" | tail -n 3 | tr '\n\t' '  ' | cut -c1-300)
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$note" >>"$OUTDIR/steps.tsv"
  say "$name: $status in ${secs}s"
  if [ "$status" != passed ] && [ "$status" != skipped ] && [ -z "$FIRST_FAILED" ]; then
    FIRST_FAILED=$name
    tail -n 25 "$OUTDIR/$name.log" | sed "s/^/  [$name] /" >&2
  fi
  return 0
}

e2e() {  # greedy ids of the bundled model on the GPU against the CPU backend and the golden
  local prompt="Once upon a time" common
  common=(--model "$MODELS/stories260K-tp1" --prompt "$prompt" --temperature 0 --ignore-eos
          --max-new-tokens 60 --stream=false)
  "$BIN/tpinfer" "${common[@]}" --backend cpu --metrics-json "$OUTDIR/e2e-cpu.json" || return 1
  if ! "$BIN/tpinfer-cuda-bandwidth" --mib 1 --iters 1 >/dev/null 2>&1; then
    echo "SKIPPED: no CUDA device"
    return 77
  fi
  "$BIN/tpinfer" "${common[@]}" --backend cuda --metrics-json "$OUTDIR/e2e-cuda.json" || return 1
  TPINFER_CUDA_GRAPHS=0 "$BIN/tpinfer" "${common[@]}" --backend cuda \
    --metrics-json "$OUTDIR/e2e-cuda-eager.json" || return 1
  python3 - "$OUTDIR" "$ROOT/tests/data/stories260K_golden_greedy.json" <<'PY'
import json, sys
out, golden = sys.argv[1], sys.argv[2]
cpu, gpu, eager = (json.load(open(f"{out}/e2e-{k}.json"))["generated_ids"]
                   for k in ("cpu", "cuda", "cuda-eager"))
g = json.load(open(golden))["once_upon"]
ref = g["ids_after_bos"][len(g["prompt_ids"]) - 1:][:len(cpu)]
def prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n
print(f"e2e: cpu = golden for {prefix(cpu, ref)}/{len(ref)} ids; cuda = cpu for "
      f"{prefix(gpu, cpu)}/{len(cpu)}; cuda graphs = cuda eager for {prefix(gpu, eager)}/{len(gpu)}")
ok = cpu == ref and gpu == eager and prefix(gpu, cpu) >= 16
sys.exit(0 if ok else 1)
PY
}

e2e_batch() {  # batch mode on the GPU: 8 requests in 4 slots, every id once, texts against the CPU
  local common=(--model "$MODELS/stories260K-tp1" --input "$ROOT/configs/batch_prompts.jsonl"
                --batch-size 4 --temperature 0)
  rm -f "$OUTDIR"/batch-*.jsonl
  "$BIN/tpinfer" "${common[@]}" --backend cpu --output "$OUTDIR/batch-cpu.jsonl" || return 1
  if ! "$BIN/tpinfer-cuda-bandwidth" --mib 1 --iters 1 >/dev/null 2>&1; then
    echo "SKIPPED: no CUDA device"
    return 77
  fi
  "$BIN/tpinfer" "${common[@]}" --backend cuda --output "$OUTDIR/batch-cuda.jsonl" || return 1
  python3 - "$OUTDIR" "$ROOT/configs/batch_prompts.jsonl" <<'PY'
import json, sys
out, inp = sys.argv[1], sys.argv[2]
want = [json.loads(l)["id"] for l in open(inp) if l.strip()]
res = {k: [json.loads(l) for l in open(f"{out}/batch-{k}.jsonl")] for k in ("cpu", "cuda")}
ok = True
for k, rows in res.items():
    ids = sorted(r["id"] for r in rows)
    if ids != sorted(want) or any("error" in r for r in rows):
        print(f"e2e batch: {k} results are not every id exactly once without errors: {ids}")
        ok = False
cpu = {r["id"]: r for r in res["cpu"]}
same = sum(cpu[r["id"]]["token_ids"] == r["token_ids"] for r in res["cuda"] if r["id"] in cpu)
first8 = sum(cpu[r["id"]]["token_ids"][:8] == r["token_ids"][:8] for r in res["cuda"] if r["id"] in cpu)
print(f"e2e batch: {len(res['cuda'])}/{len(want)} results; greedy ids equal to the cpu backend's "
      f"for {same}/{len(want)} requests, the first 8 ids for {first8}/{len(want)}")
sys.exit(0 if ok else 1)
PY
}

memcheck() {
  command -v compute-sanitizer >/dev/null || { echo "SKIPPED: compute-sanitizer not found"; return 77; }
  # API errors are not counted: the refusal tests provoke cudaErrorMemoryAllocation on purpose.
  compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 "$BIN/test_cuda_ops"
}

{
  echo "== nvidia-smi"
  nvidia-smi 2>&1 || true
  echo "== ldd tpinfer"
  cat "$OUTDIR/ldd.txt"
} >"$OUTDIR/machine.txt"
step device 60 "$BIN/tpinfer-cuda-bandwidth" --mib 1024 --iters 10
NO_GPU=0
if [ "$(tail -n 1 "$OUTDIR/steps.tsv" | cut -f2)" = skipped ]; then
  say "no usable CUDA device: $(tail -n 1 "$OUTDIR/device.log")"
  NO_GPU=1
  [ "$WITHOUT_GPU" = 1 ] || exit 77
fi
export BIN MODELS OUTDIR ROOT
export -f e2e e2e_batch memcheck
step ops 150 "$BIN/test_cuda_ops" "~[attention]~[graph]"
step attention 150 "$BIN/test_cuda_ops" "[attention]"
step graphs 90 "$BIN/test_cuda_ops" "[graph]"
step nccl 60 "$MPIRUN" -np 1 "$BIN/test_nccl_comm"
step engine_np1 150 "$MPIRUN" -np 1 "$BIN/test_cuda_engine"
step engine_np2 150 "$MPIRUN" -np 2 "$BIN/test_cuda_engine"
step e2e 90 bash -c e2e
step e2e_batch 90 bash -c e2e_batch
step bench 240 "$ROOT/scripts/bench_gpu.sh" --build "$BIN" --out "$OUTDIR/bench" --new-tokens 128 \
  --gemv-bench
step memcheck 150 bash -c memcheck

# --- report ---------------------------------------------------------------------------------------
{
  echo "GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
  echo "binaries: ${BUNDLE:-$BUILD}; total $(elapsed) s"
  printf '%-11s %-28s %7s  %s\n' step status seconds note
  while IFS=$'\t' read -r name status secs note; do
    printf '%-11s %-28s %7s  %s\n' "$name" "$status" "$secs" "$note"
  done <"$OUTDIR/steps.tsv"
  if grep -q "of bound" "$OUTDIR/bench.log" 2>/dev/null; then
    sed -n '/^device:/,/^bound =/p' "$OUTDIR/bench.log"
  fi
  if [ -n "$FIRST_FAILED" ]; then
    echo "FIRST FAILING STEP: $FIRST_FAILED (log: $OUTDIR/$FIRST_FAILED.log)"
  else
    echo "ALL STEPS PASSED OR SKIPPED"
  fi
} >"$REPORT"
python3 - "$OUTDIR" <<'PY' 2>/dev/null || true
import json, sys
out = sys.argv[1]
steps = [dict(zip(("step", "status", "seconds", "note"), l.rstrip("\n").split("\t")))
         for l in open(f"{out}/steps.tsv")]
json.dump({"steps": steps}, open(f"{out}/report.json", "w"), indent=2)
PY
cat "$REPORT"
[ -n "$FIRST_FAILED" ] && exit 1
[ "$NO_GPU" = 1 ] && exit 77
exit 0

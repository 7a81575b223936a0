#!/usr/bin/env bash
# The paged KV cache's three CPU benchmarks (issue 16) on the llama-100m shape (dummy weights,
# one rank), before (the slot model: a build of fb59ba8) and after (this tree), through the
# server where it applies. Prints three markdown tables.
#
#   scripts/bench_kv.sh BEFORE_TPINFER AFTER_TPINFER [capacity|prefix|interference ...]
#   git worktree add /tmp/before fb59ba8 && (cd /tmp/before && BUILD_DIR=/tmp/before/build \
#     scripts/build.sh -DTPINFER_CUDA=OFF) && scripts/bench_kv.sh /tmp/before/build/tpinfer \
#     build/tpinfer
#
#  capacity      sequences of 2,048 tokens in the KV memory of 8 slots x max_seq (4096, 32768)
#  prefix        64 requests, a shared 2,000-token system prompt + 50-token questions, 8 at a
#                time: TTFT p50/p99 and total time, prefix caching on vs off (after)
#  interference  8 streams decoding while an 8,000-token prompt arrives: their inter-token
#                latency p50/p99, before vs after
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if (($# < 2)); then sed -n 2,16p "$0" >&2; exit 2; fi
before=$1 after=$2
shift 2
parts=("$@")
((${#parts[@]})) || parts=(capacity prefix interference)
model=(--model "$root/configs/models/llama-100m" --dummy-weights
       --tokenizer "$root/configs/tokenizers/mistral")
export BENCH_PY=$root/scripts/bench_kv.py
cd "$root"
for part in "${parts[@]}"; do
  case $part in
    capacity)
      echo "## capacity"
      python3 scripts/bench_kv.py --label "llama-100m, max_seq 4096" capacity \
        --before-bin "$before" --after-bin "$after" --batch 8 --max-seq 4096 --length 2048
      python3 scripts/bench_kv.py --label "llama-100m, max_seq 32768" --no-header capacity \
        --before-bin "$before" --after-bin "$after" --batch 8 --max-seq 32768 --length 2048 ;;
    prefix)
      echo "## shared prefix"
      TPINFER_BIN=$after scripts/bench_server.sh 1 "prefix caching on" -- "${model[@]}" \
        --prefix-caching=true -- shared-prefix
      TPINFER_BIN=$after scripts/bench_server.sh 1 "prefix caching off" -- "${model[@]}" \
        --prefix-caching=false -- --no-header shared-prefix ;;
    interference)
      echo "## long-prompt interference"
      long=(--max-seq 8448 --allow-long-context=true)
      TPINFER_BIN=$before scripts/bench_server.sh 1 "before (slots)" -- "${model[@]}" \
        "${long[@]}" -- interference
      TPINFER_BIN=$after scripts/bench_server.sh 1 "after (paged)" -- "${model[@]}" \
        "${long[@]}" -- --no-header interference ;;
    *) echo "bench_kv.sh: unknown part '$part'" >&2; exit 2 ;;
  esac
done

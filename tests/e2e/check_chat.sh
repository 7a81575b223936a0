#!/usr/bin/env bash
# Chat mode through the whole job at tp 2: a Qwen3-shaped model (random weights, one layer) with
# the real Qwen3 tokenizer. The prompt ids the leader built and broadcast must equal transformers'
# apply_chat_template + encode (tests/data/e2e_chat_qwen3.json), with thinking on and off.
# Usage: check_chat.sh TPINFER WORK_DIR
set -euo pipefail
bin=$1 work=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
for think in true false; do
  timeout 300 "$root/scripts/mpirun.sh" -np 2 "$bin" --model "$root/configs/models/qwen3-0.6b" \
      --dummy-weights --layers 1 --tokenizer "$root/configs/tokenizers/qwen3" --chat \
      --system "Be brief." --prompt hi --enable-thinking=$think --max-new-tokens 3 \
      --metrics-json "$work/chat-$think.json" >"$work/chat-$think.out" 2>"$work/chat-$think.err"
  /usr/bin/python3 - "$root/tests/data/e2e_chat_qwen3.json" "$work/chat-$think.json" "$think" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["cases"]["thinking" if sys.argv[3] == "true" else "no_thinking"]
m = json.load(open(sys.argv[2]))
assert m["prompt_ids"] == g["ids"], (m["prompt_ids"], g["ids"])
assert m["generated_tokens"] <= 3 and m["tp"] == 2
print(f"chat enable_thinking={sys.argv[3]}: {len(g['ids'])} prompt ids equal transformers'")
PY
done

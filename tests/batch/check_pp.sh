#!/usr/bin/env bash
# Pipeline stages change nothing but where the layers run: under mpirun -np 4 with PP stages of
# tp=TP (dp = 4 / (PP x TP) replicas), every batch result equals the single-prompt run of its
# request on the tp=2 model without stages, token for token (greedy and seeded sampling), at
# batch sizes 3 (prefill chunks beside decode tokens) and 8; prefix caching off gives the same
# results; n = 3 greedy choices are each the n = 1 text (the forked blocks live on every stage).
# Decode runs as PP micro-batches in flight: the log must show steps sent while another was in
# flight; one step in flight (TPINFER_PP_MICROBATCHES=1) gives the same results, and so do 8 and a
# KV pool small enough that sequences are preempted while their steps are in flight.
# Usage: check_pp.sh TPINFER CONVERTED_TP2_DIR CONVERTED_PP_DIR WORK_DIR PP TP
set -euo pipefail
# shellcheck source=single_refs.sh
source "$(dirname "$0")/single_refs.sh"
bin=$1 ref_model=$2 model=$3 pp=$5 tp=$6 work=$4/pp${5}-tp${6}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check="/usr/bin/python3 $here/batch_check.py"
dp=$((4 / (pp * tp)))
rm -rf "$work"
mkdir -p "$work/single"

$check prompts 12 "$work/in.jsonl"
single_refs "$bin" "$ref_model" "$work/in.jsonl" "$work/single"
echo "ran $(ls "$work/single"/*.json | wc -l) single-prompt references (tp=2, no stages)"

run() { timeout 300 "$root/scripts/mpirun.sh" -np 4 "$bin" --model "$model" --pp "$pp" --tp "$tp" "$@"; }
for bs in 3 8; do
  run --input "$work/in.jsonl" --output "$work/out-b$bs.jsonl" --batch-size "$bs" \
      2>"$work/batch-b$bs.err" || { echo "FAIL: batch size $bs"; tail -n 20 "$work/batch-b$bs.err"; exit 1; }
  grep "batch: .* result(s) written" "$work/batch-b$bs.err"
  grep -q "layout: 4 rank(s) = dp $dp x pp $pp x tp $tp" "$work/batch-b$bs.err"
  $check exactly-once "$work/in.jsonl" "$work/out-b$bs.jsonl"
  $check vs-single "$work/in.jsonl" "$work/single" "$work/out-b$bs.jsonl"
done
run --input "$work/in.jsonl" --output "$work/out-noprefix.jsonl" --batch-size 8 \
    --prefix-caching=false 2>"$work/noprefix.err"
$check same "$work/out-b8.jsonl" "$work/out-noprefix.jsonl"

# Micro-batches in flight: at batch size 8 most steps go out while another is in flight.
line=$(grep -E "pipeline: replica 0 sent [0-9]+ step\(s\), [0-9]+ \([0-9]+%\) while another was in flight \(up to $pp micro-batches\)" "$work/batch-b8.err") ||
  { echo "FAIL: no pipeline line with $pp micro-batches"; grep "pipeline:" "$work/batch-b8.err"; exit 1; }
echo "$line"
pct=$(sed -E 's/.*\(([0-9]+)%\).*/\1/' <<<"$line")
[ "$pct" -ge 10 ] || { echo "FAIL: only $pct% of the steps overlapped another"; exit 1; }
TPINFER_PP_MICROBATCHES=1 run --input "$work/in.jsonl" --output "$work/out-depth1.jsonl" \
    --batch-size 8 2>"$work/depth1.err"
grep -q "while another was in flight (up to 1 micro-batches)" "$work/depth1.err"
$check same "$work/out-b8.jsonl" "$work/out-depth1.jsonl"
# The most steps in flight the links allow (their rings of plan sends and reply receives).
TPINFER_PP_MICROBATCHES=8 run --input "$work/in.jsonl" --output "$work/out-depth8.jsonl" \
    --batch-size 8 2>"$work/depth8.err"
grep -q "while another was in flight (up to 8 micro-batches)" "$work/depth8.err"
$check same "$work/out-b8.jsonl" "$work/out-depth8.jsonl"
# 28 blocks of 16 positions for 8 sequences, three of them 200-300 tokens long: preemptions.
run --input "$work/in.jsonl" --output "$work/out-small.jsonl" --batch-size 8 \
    --kv-cache-blocks 28 2>"$work/small.err"
preempted=$(grep -oE "[0-9]+ preemption\(s\)" "$work/small.err" | tail -n 1 | cut -d' ' -f1)
[ "${preempted:-0}" -gt 0 ] || { echo "FAIL: no preemption with 28 KV blocks"; exit 1; }
echo "$preempted preemption(s) with steps in flight"
$check vs-single "$work/in.jsonl" "$work/single" "$work/out-small.jsonl"
TPINFER_PP_MICROBATCHES=0 run --input "$work/in.jsonl" --output "$work/bad-depth.jsonl" \
    2>"$work/bad-depth.err" </dev/null && { echo "FAIL: TPINFER_PP_MICROBATCHES=0 accepted"; exit 1; }
grep -q "TPINFER_PP_MICROBATCHES: expected an integer from 1 to 8, found '0'" "$work/bad-depth.err" ||
  { echo "FAIL: unclear TPINFER_PP_MICROBATCHES error"; tail -n 5 "$work/bad-depth.err"; exit 1; }

# Tokens are drawn on the last stage when only the sampler decides them; rows with logprobs,
# penalties or the first token of n > 1 choices go to the leader whole. Both equal tp 2 without
# stages (token ids and text; logprobs within 1e-4: bit for bit at tp 2).
cat >"$work/mixed.jsonl" <<'JSONL'
{"id": "logprobs", "prompt": "Once upon a time", "max_new_tokens": 16, "temperature": 0, "logprobs": 2}
{"id": "penalty", "prompt": "The little dog", "max_new_tokens": 16, "temperature": 0.8, "seed": 3, "presence_penalty": 0.5}
{"id": "n3", "prompt": "One day", "max_new_tokens": 16, "temperature": 0.9, "seed": 11, "n": 3}
{"id": "plain", "prompt": "Tom had a red ball", "max_new_tokens": 16, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "seed": 5}
JSONL
timeout 120 "$root/scripts/mpirun.sh" -np 2 "$bin" --model "$ref_model" --input "$work/mixed.jsonl" \
    --output "$work/mixed-ref.jsonl" 2>"$work/mixed-ref.err"
run --input "$work/mixed.jsonl" --output "$work/mixed-pp.jsonl" 2>"$work/mixed-pp.err"
grep "pipeline: replica 0" "$work/mixed-pp.err"
grep -qE "pipeline: replica 0 .* [1-9][0-9]* token\(s\) drawn on the last stage, [1-9][0-9]* logits row\(s\) sent" \
    "$work/mixed-pp.err" || { echo "FAIL: expected tokens drawn on the last stage and rows sent whole"; exit 1; }
/usr/bin/python3 - "$work/mixed-ref.jsonl" "$work/mixed-pp.jsonl" <<'PY'
import json, sys
a, b = ({json.loads(l)["id"]: json.loads(l) for l in open(p)} for p in sys.argv[1:3])
assert a.keys() == b.keys(), (a.keys(), b.keys())
for k in a:
    ca = a[k].get("choices", [a[k]])
    cb = b[k].get("choices", [b[k]])
    for x, y in zip(ca, cb, strict=True):
        for key in ("token_ids", "text"):
            assert x.get(key) == y.get(key), (k, key, x.get(key), y.get(key))
        # Logprobs: the same ids; the values within 1e-4 (a tp 1 layout sums in another order).
        for p, q in zip(x.get("logprobs", []), y.get("logprobs", []), strict=True):
            assert p["id"] == q["id"] and abs(p["logprob"] - q["logprob"]) < 1e-4, (k, p, q)
            for u, v in zip(p["top_logprobs"], q["top_logprobs"], strict=True):
                assert u["id"] == v["id"] and abs(u["logprob"] - v["logprob"]) < 1e-4, (k, u, v)
print(f"mixed requests: {len(a)} equal tp 2 without stages (ids, text; logprobs within 1e-4)")
PY

cat >"$work/choices.jsonl" <<'JSONL'
{"id": "one", "prompt": "Once upon a time", "max_new_tokens": 12, "temperature": 0}
{"id": "greedy", "prompt": "Once upon a time", "max_new_tokens": 12, "temperature": 0, "n": 3}
JSONL
run --input "$work/choices.jsonl" --output "$work/choices-out.jsonl" 2>"$work/choices.err"
/usr/bin/python3 - "$work/choices-out.jsonl" <<'PY'
import json, sys
res = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[1])}
one = res["one"]["text"]
texts = [c["text"] for c in res["greedy"]["choices"]]
assert len(texts) == 3 and all(t == one for t in texts), (one, texts)
print("n = 3 greedy choices equal the n = 1 text")
PY
echo "PASS"

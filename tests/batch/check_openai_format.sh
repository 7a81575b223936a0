#!/usr/bin/env bash
# Batch files in the OpenAI Batch API format (issue 9) under mpirun -np 4 (dp=2 x tp=2):
#  1. completion lines answer {"custom_id", "response": {"status_code": 200, "body": <a
#     text_completion>}}, greedy texts equal to the same prompts in tpinfer's simple format,
#     logprobs in the completions form (and the simple format's "logprobs" the same values),
#     stop strings honoured;
#  2. lines the API would refuse are answered with their status and OpenAI's error JSON (400 a
#     bad field, 404 another model, 400 a chat for a tokenizer without a template), and a line
#     without custom_id is a bad line (skipped with --on-bad-line skip);
#  3. resume: with the last two result lines cut (one torn), a rerun answers exactly those, and
#     every custom_id is in the output exactly once.
# Usage: check_openai_format.sh TPINFER CONVERTED_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3/openai-format
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"
mkdir -p "$work"
run() { timeout 300 "$root/scripts/mpirun.sh" -np 4 "$bin" --model "$model" --tp 2 "$@"; }

prompts=("Once upon a time" "The cat" "Tom had a dog" "Lily saw a bird" "The sun was")
: >"$work/in.jsonl"
: >"$work/simple.jsonl"
for i in "${!prompts[@]}"; do
  p=${prompts[$i]}
  echo "{\"custom_id\": \"c$i\", \"method\": \"POST\", \"url\": \"/v1/completions\", \"body\": {\"model\": \"stories260K-tp2\", \"prompt\": \"$p\", \"max_tokens\": 16, \"temperature\": 0, \"logprobs\": 2}}" >>"$work/in.jsonl"
  echo "{\"id\": \"c$i\", \"prompt\": \"$p\", \"max_new_tokens\": 16, \"temperature\": 0, \"logprobs\": 1}" >>"$work/simple.jsonl"
done
cat >>"$work/in.jsonl" <<'JSONL'
{"custom_id": "stop", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Tom had a dog", "max_tokens": 40, "temperature": 0, "stop": ["."]}}
{"custom_id": "bad-field", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "temperature": "hot"}}
{"custom_id": "other-model", "method": "POST", "url": "/v1/completions", "body": {"model": "gpt-4o", "prompt": "x"}}
{"custom_id": "chat", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}
{"method": "POST", "url": "/v1/completions", "body": {"prompt": "no custom_id"}}
JSONL

run --input "$work/simple.jsonl" --output "$work/simple-out.jsonl" 2>"$work/simple.err"
run --input "$work/in.jsonl" --output "$work/out.jsonl" --on-bad-line skip 2>"$work/run1.err"
grep -q "1 bad line(s) skipped" "$work/run1.err" || { echo "FAIL: the line without custom_id"; cat "$work/run1.err"; exit 1; }

check() {
/usr/bin/python3 - "$work/in.jsonl" "$work/out.jsonl" "$work/simple-out.jsonl" <<'PY'
import json, sys
inp = [json.loads(l) for l in open(sys.argv[1])]
out = [json.loads(l) for l in open(sys.argv[2])]
simple = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[3])}
ids = [o["custom_id"] for o in out]
want = [l["custom_id"] for l in inp if "custom_id" in l]
assert sorted(ids) == sorted(want), ("each custom_id exactly once", ids, want)
by = {o["custom_id"]: o for o in out}
for o in out:
    assert o["id"].startswith("batch_req_") and o["error"] is None, o
    assert o["response"]["request_id"].startswith("req_"), o
for cid, ref in simple.items():
    r = by[cid]["response"]
    assert r["status_code"] == 200, r
    body = r["body"]
    assert body["object"] == "text_completion" and body["model"] == "stories260K-tp2", body
    ch = body["choices"][0]
    assert ch["text"] == ref["text"], (cid, ch["text"], ref["text"])
    assert body["usage"]["completion_tokens"] == len(ref["token_ids"]), body["usage"]
    lp = ch["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ref["token_ids"])
    for chosen, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
        assert len(top) == 2 and abs(max(top.values()) - chosen) < 1e-6, (chosen, top)  # greedy
    assert "".join(lp["tokens"]) == ch["text"], (lp["tokens"], ch["text"])
    # The simple format's logprobs: the same values, ids instead of token text.
    slp = ref["logprobs"]
    assert [e["id"] for e in slp] == ref["token_ids"], slp
    assert all(abs(e["logprob"] - c) < 1e-6 for e, c in zip(slp, lp["token_logprobs"])), slp
    assert all(len(e["top_logprobs"]) == 1 and e["top_logprobs"][0]["id"] == e["id"] for e in slp)
st = by["stop"]["response"]["body"]["choices"][0]
assert st["finish_reason"] == "stop" and "." not in st["text"], st
for cid, status, param in [("bad-field", 400, "temperature"), ("other-model", 404, "model"),
                           ("chat", 400, "messages")]:
    r = by[cid]["response"]
    assert r["status_code"] == status, (cid, r)
    e = r["body"]["error"]
    assert e["param"] == param and e["type"] == "invalid_request_error" and e["message"], (cid, e)
print("openai batch: %d lines answered; greedy texts equal the simple format's" % len(out))
PY
}
check

# Resume: cut the last complete line and tear the one before... keep 6 whole lines + half a line.
head -n 6 "$work/out.jsonl" >"$work/cut.jsonl"
sed -n 7p "$work/out.jsonl" | head -c 40 >>"$work/cut.jsonl"
mv "$work/cut.jsonl" "$work/out.jsonl"
run --input "$work/in.jsonl" --output "$work/out.jsonl" --on-bad-line skip 2>"$work/run2.err"
grep -q "dropping a torn last line" "$work/run2.err" || { echo "FAIL: no torn line"; cat "$work/run2.err"; exit 1; }
grep "already in" "$work/run2.err"
check
echo PASS

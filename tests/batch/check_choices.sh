#!/usr/bin/env bash
# n > 1 choices in batch files under mpirun -np 4 (dp=2 x tp=2):
#  1. the simple format: a line with "n": 3 answers one line with "choices" (indexes 0..2);
#     greedy choices are the same text as the same prompt with n = 1; seeded sampled choices are
#     not all equal and the same in a second run; usage counts the prompt once;
#  2. the OpenAI format: the body's "n" answers a text_completion with n choices by index and
#     usage over all of them;
#  3. resume: with the last two result lines cut (one torn), a rerun writes exactly those
#     again, with the same choices: every id once, nothing lost.
# Usage: check_choices.sh TPINFER CONVERTED_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3/choices
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"
mkdir -p "$work"
run() { timeout 300 "$root/scripts/mpirun.sh" -np 4 "$bin" --model "$model" --tp 2 "$@"; }

cat >"$work/in.jsonl" <<'JSONL'
{"id": "one", "prompt": "Once upon a time", "max_new_tokens": 12, "temperature": 0}
{"id": "greedy", "prompt": "Once upon a time", "max_new_tokens": 12, "temperature": 0, "n": 3}
{"id": "sampled", "prompt": "The cat", "max_new_tokens": 12, "temperature": 1.0, "seed": 11, "n": 4}
{"custom_id": "api", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Tom had a dog", "max_tokens": 8, "temperature": 0.9, "seed": 3, "n": 3, "logprobs": 1}}
{"id": "sampled2", "prompt": "Lily saw a bird", "max_new_tokens": 10, "temperature": 1.0, "seed": 5, "n": 2}
JSONL
run --input "$work/in.jsonl" --output "$work/out1.jsonl" 2>"$work/run1.err" ||
  { echo "FAIL: run 1"; tail -n 20 "$work/run1.err"; exit 1; }
run --input "$work/in.jsonl" --output "$work/out2.jsonl" 2>"$work/run2.err" ||
  { echo "FAIL: run 2"; tail -n 20 "$work/run2.err"; exit 1; }

/usr/bin/python3 - "$work/out1.jsonl" "$work/out2.jsonl" <<'PY'
import json, sys
def load(p):
    out = {}
    for l in open(p):
        j = json.loads(l)
        out[j.get("custom_id", j.get("id"))] = j
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert sorted(a) == ["api", "greedy", "one", "sampled", "sampled2"], sorted(a)
one = a["one"]
assert "choices" not in one and "text" in one, one  # n = 1 keeps its shape
g = a["greedy"]
assert g["n"] == 3 and [c["index"] for c in g["choices"]] == [0, 1, 2], g
assert all(c["text"] == one["text"] for c in g["choices"]), (g, one["text"])
assert g["prompt_tokens"] == one["prompt_tokens"], g
assert g["completion_tokens"] == sum(c["completion_tokens"] for c in g["choices"]), g
s = a["sampled"]["choices"]
texts = [c["text"] for c in s]
assert len(s) == 4 and len(set(texts)) > 1, texts
assert texts == [c["text"] for c in b["sampled"]["choices"]], "seeded choices differ between runs"
body = a["api"]["response"]["body"]
assert a["api"]["response"]["status_code"] == 200, a["api"]
assert [c["index"] for c in body["choices"]] == [0, 1, 2], body
assert body["usage"]["completion_tokens"] == sum(len(c["logprobs"]["tokens"]) for c in body["choices"]), body
assert [c["text"] for c in body["choices"]] == \
    [c["text"] for c in b["api"]["response"]["body"]["choices"]], "seeded API choices differ"
print("choices: greedy 3 x %r; sampled %r; api %r" % (one["text"], texts,
      [c["text"] for c in body["choices"]]))
PY

# Resume: cut the last complete line and tear the one before it.
cp "$work/out1.jsonl" "$work/resume.jsonl"
/usr/bin/python3 - "$work/resume.jsonl" <<'PY'
import sys
p = sys.argv[1]
lines = open(p, "rb").read().splitlines(keepends=True)
keep = lines[:-2] + [lines[-2][: len(lines[-2]) // 2]]  # the second-to-last torn, the last gone
open(p, "wb").write(b"".join(keep))
PY
run --input "$work/in.jsonl" --output "$work/resume.jsonl" 2>"$work/run3.err" ||
  { echo "FAIL: the resumed run"; tail -n 20 "$work/run3.err"; exit 1; }
grep -q "dropping a torn last line" "$work/run3.err" || { echo "FAIL: no torn-line warning"; cat "$work/run3.err"; exit 1; }
/usr/bin/python3 - "$work/out1.jsonl" "$work/resume.jsonl" <<'PY'
import json, sys
def load(p):
    lines = [json.loads(l) for l in open(p)]
    keys = [j.get("custom_id", j.get("id")) for j in lines]
    assert len(keys) == len(set(keys)), ("an id written twice", keys)
    return {k: j for k, j in zip(keys, lines)}
first, resumed = load(sys.argv[1]), load(sys.argv[2])
assert sorted(first) == sorted(resumed), (sorted(first), sorted(resumed))
def texts(j):
    if "response" in j:
        return [c["text"] for c in j["response"]["body"]["choices"]]
    return [c["text"] for c in j["choices"]] if "choices" in j else [j["text"]]
for k in first:
    assert texts(first[k]) == texts(resumed[k]), (k, texts(first[k]), texts(resumed[k]))
print("resume: every id once, the rerun's choices equal the first run's")
PY
echo "PASS: n > 1 in both batch formats, reproducible, resumable"

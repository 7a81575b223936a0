#!/usr/bin/env bash
# Exactly-once and per-request failures of a batch job (issue 10):
#  - input and output the same file (also through a symlink or another spelling) is refused on
#    every rank, and the input is left as it was;
#  - a second job on an output the first has already scanned is refused: each id exactly once;
#  - a line over max_request_bytes, or beyond the model's positions, is a bad line with its sizes;
#  - a request that fails on its own (an id the tokenizer cannot decode; NaN logits) gets an
#    error line and the others complete (exit 0).
# Usage: check_integrity.sh TPINFER CONVERTED_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3/integrity
root=$(cd "$(dirname "$0")/../.." && pwd)
check="/usr/bin/python3 $root/tests/batch/batch_check.py"
tamper="/usr/bin/python3 $root/tests/io/tamper_shard.py"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
run() { timeout 180 "$root/scripts/mpirun.sh" -np "${NP:-4}" "$bin" --model "${MODEL:-$model}" --tp 2 "$@" </dev/null; }
expect() {  # expect FILE REGEX: the extended regex must match a line of FILE
  grep -qE -- "$2" "$1" || { echo "FAIL: no /$2/ in $1:"; sed 's/^/  /' "$1" | head -20; exit 1; }
}
ranks() {  # ranks FILE REGEX N: the error line /REGEX/ from N ranks
  local n
  n=$(grep -cE -- "tpinfer: error: \[rank [0-9]+\] .*$2" "$1" || true)
  ((n == $3)) || { echo "FAIL: /$2/ from $n rank(s), expected $3:"; sed 's/^/  /' "$1" | head; exit 1; }
}

cat >in.jsonl <<'JSONL'
{"id": "a", "prompt": "Once upon a time", "max_new_tokens": 6}
{"id": "b", "prompt": "The little dog", "max_new_tokens": 6}
{"id": "c", "prompt": "One day", "max_new_tokens": 6}
{"id": "d", "prompt": "Tom had a red ball", "max_new_tokens": 6}
JSONL
cp in.jsonl in.orig
ln -s in.jsonl link.jsonl
mkdir -p sub
for out in in.jsonl link.jsonl ./sub/../in.jsonl "$work/in.jsonl"; do
  rc=0
  run --input in.jsonl --output "$out" 2>same.err || rc=$?
  ((rc != 0)) || { echo "FAIL: --output $out (the input) was accepted"; exit 1; }
  ranks same.err "keys 'input' and 'output' name the same file" 4
  cmp -s in.jsonl in.orig || { echo "FAIL: the input was changed"; exit 1; }
done
echo "input == output (4 spellings): refused on every rank, input untouched"

# Two jobs on one output, the second started while the first is between its scan of the output
# and its first write: the first is tokenizing 100000 filler lines (50 MB, refused afterwards as
# over --max-seq), and its "unknown key" warning comes right after the scan. Before, the first job
# took the lock only after tokenizing: the second ran, finished and released it, and the first
# then wrote a, b, c, d a second time. Now the lock comes before the scan: the second is refused.
/usr/bin/python3 - <<'PY'
import json, random
random.seed(1)
words = "once upon a time there was a little girl named lily she loved her dog".split()
with open("many.jsonl", "w") as f:
    f.write(json.dumps({"id": "a", "prompt": "Once upon a time", "max_new_tokens": 6,
                        "note": "the first job's marker"}) + "\n")
    for l in list(open("in.jsonl"))[1:]:
        f.write(l)
    for i in range(100000):
        f.write(json.dumps({"id": f"f{i}", "max_new_tokens": 4,
                            "prompt": " ".join(random.choice(words) for _ in range(100))}) + "\n")
PY
rm -f two.jsonl
NP=2 run --input many.jsonl --output two.jsonl --max-seq 64 --on-bad-line skip \
    2>two-first.err & first=$!
for _ in $(seq 1 600); do  # up to 120 s for the first job to reach its scan
  grep -q 'unknown key "note"' two-first.err 2>/dev/null && break
  kill -0 $first 2>/dev/null || break
  sleep 0.2
done
expect two-first.err 'unknown key "note"'
rc=0
NP=2 run --input in.jsonl --output two.jsonl 2>two-second.err || rc=$?
wait $first || { echo "FAIL: the first job failed"; tail -5 two-first.err; exit 1; }
$check exactly-once in.jsonl two.jsonl
((rc != 0)) || { echo "FAIL: a second job ran on an output the first had scanned"; exit 1; }
ranks two-second.err "two.jsonl: another job is writing this output file" 2
rm -f many.jsonl two-first.err
echo "two jobs on one output: the second refused, every id exactly once"

# Size and length limits, per line.
/usr/bin/python3 - <<'PY'
import json
with open("limits.jsonl", "w") as f:
    f.write(json.dumps({"id": "ok", "prompt": "Once upon a time", "max_new_tokens": 4}) + "\n")
    f.write(json.dumps({"id": "big", "prompt": "x" * 3000, "max_new_tokens": 4}) + "\n")
    f.write(json.dumps({"id": "long", "prompt": "One day", "max_new_tokens": 600}) + "\n")
    f.write(json.dumps({"id": "huge", "prompt": "One day", "max_new_tokens": 2**31 - 1}) + "\n")
PY
run --input limits.jsonl --output limits.out --max-request-bytes 2000 --on-bad-line skip \
    2>limits.err
expect limits.err "limits.jsonl:2: the line is 30[0-9]{2} bytes, larger than max_request_bytes=2000"
expect limits.err "limits.jsonl:3: prompt \([0-9]+ tokens\) \+ max_new_tokens \(600\) = [0-9]+ exceeds the model's max_position_embeddings=512"
expect limits.err "limits.jsonl:4: \"max_new_tokens\" must be in \[0, 16777216\], found 2147483647"
/usr/bin/python3 -c "
import json, sys
ids = [json.loads(l)['id'] for l in open('limits.out')]
assert ids == ['ok'], ids"
echo "max_request_bytes, max_position_embeddings, max_new_tokens: bad lines with their sizes"

# A request whose generated id has no token: its own error line; the others complete.
cp -r "$model" tok-model
# Greedy "Once upon a time" generates id 383 second; the other two prompts do not within 12.
/usr/bin/python3 - tok-model 383 <<'PY'
import json, sys
d, drop = sys.argv[1], int(sys.argv[2])
t = json.load(open(d + "/tokenizer.json"))
vocab = t["model"]["vocab"]
name = [k for k, v in vocab.items() if v == drop][0]
del vocab[name]
t["model"]["merges"] = [m for m in t["model"]["merges"]
                        if (m if isinstance(m, str) else " ".join(m)).replace(" ", "") != name]
json.dump(t, open(d + "/tokenizer.json", "w"))
PY
cat >fail.jsonl <<'JSONL'
{"id": "victim", "prompt": "Once upon a time", "max_new_tokens": 12}
{"id": "ok1", "prompt": "The little dog", "max_new_tokens": 12}
{"id": "ok2", "prompt": "One day", "max_new_tokens": 12}
JSONL
run --input fail.jsonl --output fail.out --tokenizer tok-model 2>fail.err ||
  { echo "FAIL: one failing request failed the job"; cat fail.err; exit 1; }
$check exactly-once fail.jsonl fail.out
/usr/bin/python3 - fail.out <<'PY'
import json, sys
res = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[1])}
v = res["victim"]
assert v["finish_reason"] == "error" and "has no token" in v["error"], v
for k in ("ok1", "ok2"):
    assert res[k]["finish_reason"] in ("stop", "length") and "error" not in res[k], res[k]
PY
expect fail.err "request \"victim\" failed \(an error line is in the output\): token [0-9]+: tokenizer: id [0-9]+ has no token"
expect fail.err "1 of those request\(s\) failed"
echo "an id with no token: that request's error line, the others complete, exit 0"

# NaN logits in batch mode: every request gets its error line, none garbage.
cp -r "$model" nan-model
for r in 0 1; do $tamper nan-model $r set model.norm.weight 5 nan; done
MODEL=nan-model run --input in.jsonl --output nan.out 2>nan.err ||
  { echo "FAIL: NaN logits failed the job instead of the requests"; cat nan.err; exit 1; }
$check exactly-once in.jsonl nan.out
/usr/bin/python3 - nan.out <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert r["finish_reason"] == "error" and "non-finite logits: NaN" in r["error"], r
    assert r["token_ids"] == [], r
PY
echo "NaN logits: an error line per request"
echo PASS

#!/usr/bin/env bash
# Bad input never crashes or hangs a batch job:
#  - malformed lines are reported with their line numbers; on_bad_line=fail (the default) refuses
#    the job before any work and leaves the output alone, on_bad_line=skip runs the good lines;
#  - a rerun of a finished job has nothing to do; an output file with a foreign line is refused;
#  - tp that does not divide the world is a clear error on every rank.
# Usage: check_bad_input.sh TPINFER CONVERTED_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3/bad-input
root=$(cd "$(dirname "$0")/../.." && pwd)
check="/usr/bin/python3 $(dirname "$0")/batch_check.py"
rm -rf "$work"
mkdir -p "$work"
run() { timeout 120 "$root/scripts/mpirun.sh" -np 4 "$bin" --model "$model" --tp 2 "$@" </dev/null; }
expect() {  # expect FILE REGEX: the extended regex must match a line of FILE
  grep -qE -- "$2" "$1" || { echo "FAIL: no /$2/ in $1:"; sed 's/^/  /' "$1" | head -20; exit 1; }
}

cat >"$work/in.jsonl" <<'EOF'
{"id": "ok1", "prompt": "Once upon a time", "max_new_tokens": 10}
{"id": "ok2", "prompt": "The little dog", "max_new_tokens": 10}
this line is not JSON
{"prompt": "no id here"}
{"id": "t", "prompt": "x", "temperature": -1}

{"id": "ok1", "prompt": "the same id again"}
{"id": "long", "prompt": "Once upon a time", "max_new_tokens": 500}
{"id": "ok3", "messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 5}
{"id": "ok4", "prompt": "One day", "max_new_tokens": 10, "stop": "."}
EOF
# stories260K has no chat template: line 9 cannot be tokenized; line 8 exceeds --max-seq 128.
bad_lines=(3 4 5 7 8 9)

rc=0
run --input "$work/in.jsonl" --output "$work/out.jsonl" --max-seq 128 2>"$work/fail.err" || rc=$?
((rc != 0)) || { echo "FAIL: on_bad_line=fail accepted bad lines"; exit 1; }
expect "$work/fail.err" "tpinfer: error: \[rank 0\] 6 bad input line\(s\), refused \(on_bad_line: fail\)"
for n in "${bad_lines[@]:0:5}"; do expect "$work/fail.err" "in.jsonl:$n: "; done
expect "$work/fail.err" "and 1 more"
(($(grep -c "tpinfer: error: \[rank" "$work/fail.err") == 4)) || { echo "FAIL: not every rank reported"; exit 1; }
[[ ! -e $work/out.jsonl ]] || { echo "FAIL: a refused job created the output"; exit 1; }
echo "fail: refused with every bad line numbered (exit $rc), no output written"

run --input "$work/in.jsonl" --output "$work/out.jsonl" --max-seq 128 --on-bad-line skip \
    2>"$work/skip.err"
expect "$work/skip.err" "in.jsonl:3: not valid JSON.*\(skipped: on_bad_line=skip\)"
expect "$work/skip.err" "in.jsonl:4: missing \"id\""
expect "$work/skip.err" "in.jsonl:5: \"temperature\" must be >= 0"
expect "$work/skip.err" "in.jsonl:7: duplicate id \"ok1\" \(first on line 1\)"
expect "$work/skip.err" "in.jsonl:8: prompt \([0-9]+ tokens\) \+ max_new_tokens \(500\) = [0-9]+ exceeds max_seq=128"
expect "$work/skip.err" "in.jsonl:9: cannot tokenize: .*chat_template"
/usr/bin/python3 - "$work/out.jsonl" <<'PY'
import json, sys
ids = sorted(json.loads(l)["id"] for l in open(sys.argv[1]))
assert ids == ["ok1", "ok2", "ok4"], ids
PY
echo "skip: the 3 good requests ran, the 6 bad lines were reported by number"

run --input "$work/in.jsonl" --output "$work/out.jsonl" --max-seq 128 --on-bad-line skip \
    2>"$work/again.err"
expect "$work/again.err" "3 already in .*; 0 to run"
expect "$work/again.err" "batch: nothing to do"
echo "rerun: nothing to do"

printf '{"id": "ok1", "text": "x"}\nsomebody else wrote this\n' >"$work/foreign.jsonl"
rc=0
run --input "$work/in.jsonl" --output "$work/foreign.jsonl" --on-bad-line skip \
    2>"$work/foreign.err" || rc=$?
((rc != 0)) || { echo "FAIL: an output file with a foreign line was accepted"; exit 1; }
expect "$work/foreign.err" "foreign.jsonl:2: not a result line"
echo "foreign output line: refused (exit $rc)"

rc=0
timeout 120 "$root/scripts/mpirun.sh" -np 4 "$bin" --model "$model" --tp 3 \
    --input "$work/in.jsonl" --output "$work/tp3.jsonl" </dev/null 2>"$work/tp3.err" || rc=$?
((rc != 0)) || { echo "FAIL: tp=3 on 4 ranks was accepted"; exit 1; }
expect "$work/tp3.err" "tp=3 does not divide the 4 MPI ranks.*valid tp: 1, 2, 4"
echo "tp=3 on 4 ranks: refused (exit $rc)"
echo "PASS"

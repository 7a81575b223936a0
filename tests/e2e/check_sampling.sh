#!/usr/bin/env bash
# The sampling keys through the CLI and a YAML config at tp 2 (issue 17), against transformers'
# greedy generate with the same logits processors (tests/data/goldens/logit_processors.json,
# scripts/gen_logit_processor_goldens.py):
#  1. repetition_penalty and logit_bias (flags, and the same keys from a YAML file) give the
#     golden's 32 ids;
#  2. stop_token_ids ends generation before the first listed id;
#  3. a bad list value fails on every rank with the key named.
# Usage: check_sampling.sh TPINFER CONVERTED_STORIES260K_TP2_DIR WORK_DIR
set -euo pipefail
bin=$1 model=$2 work=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
golden=$root/tests/data/goldens/logit_processors.json
mkdir -p "$work"
run() { timeout 300 "$root/scripts/mpirun.sh" -np 2 "$bin" --model "$model" "$@"; }
prompt=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['prompt'])" "$golden")
ids_of() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['generated_ids'])" "$1"; }

for i in 0 1 2; do
  read -r rep bias want < <(/usr/bin/python3 - "$golden" "$i" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["generate"][int(sys.argv[2])]
print(g["repetition_penalty"], g["logit_bias"] or "-", json.dumps(g["ids"]).replace(" ", ""))
PY
)
  args=(--repetition-penalty "$rep")
  [[ $bias == - ]] || args+=(--logit-bias "$bias")
  run --prompt "$prompt" --temperature 0 --max-new-tokens 32 --ignore-eos "${args[@]}" \
      --metrics-json "$work/case$i.json" >"$work/case$i.out" 2>"$work/case$i.err"
  got=$(ids_of "$work/case$i.json" | tr -d ' ')
  [[ $got == "$want" ]] || { echo "FAIL: repetition_penalty $rep logit_bias $bias: ids $got, transformers $want"; exit 1; }
  echo "repetition_penalty $rep, logit_bias '$bias': 32 ids equal transformers'"
done

# The last case again from a YAML config.
read -r rep bias want < <(/usr/bin/python3 - "$golden" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["generate"][2]
print(g["repetition_penalty"], g["logit_bias"], json.dumps(g["ids"]).replace(" ", ""))
PY
)
cat >"$work/sampling.yaml" <<YAML
model: $model
prompt: "$prompt"
temperature: 0
max_new_tokens: 32
ignore_eos: true
repetition_penalty: $rep
logit_bias: "$bias"
YAML
timeout 300 "$root/scripts/mpirun.sh" -np 2 "$bin" "$work/sampling.yaml" \
    --metrics-json "$work/yaml.json" >"$work/yaml.out" 2>"$work/yaml.err"
got=$(ids_of "$work/yaml.json" | tr -d ' ')
[[ $got == "$want" ]] || { echo "FAIL: YAML config: ids $got, transformers $want"; exit 1; }
echo "YAML config with the same keys: the same 32 ids"

# stop_token_ids: the 6th greedy id of case 0 ends the text before it.
stop=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['generate'][0]['ids'][5])" "$golden")
run --prompt "$prompt" --temperature 0 --max-new-tokens 32 --ignore-eos --repetition-penalty 1.3 \
    --stop-token-ids "$stop" --metrics-json "$work/stop.json" >"$work/stop.out" 2>"$work/stop.err"
/usr/bin/python3 - "$golden" "$work/stop.json" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))["generate"][0]["ids"]
got = json.load(open(sys.argv[2]))["generated_ids"]
stop = want[5]
assert got == want[:want.index(stop)], (got, want, stop)
print(f"stop_token_ids {stop}: generation ended before it ({len(got)} ids)")
PY

# A bad value: every rank names the key.
set +e
run --prompt x --logit-bias "5:200" >"$work/bad.out" 2>"$work/bad.err"
rc=$?
set -e
((rc != 0)) || { echo "FAIL: logit_bias 5:200 was accepted"; exit 1; }
grep -q "key 'logit_bias': expected ID:BIAS pairs" "$work/bad.err" || {
  echo "FAIL: no clear message for logit_bias 5:200:"; cat "$work/bad.err"; exit 1; }
echo "logit_bias 5:200: refused naming the key (exit $rc)"
echo PASS

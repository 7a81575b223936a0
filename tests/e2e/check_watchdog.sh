#!/usr/bin/env bash
# The watchdog under mpirun (issue 10: a rank stopped with SIGSTOP used to leave every rank
# waiting forever, silently). A 100M-parameter Llama shape with dummy weights generates long
# enough to be caught mid-generation:
#  1. one rank (the last, or RANK) is stopped with SIGSTOP during decoding, step_timeout_s 10:
#     the job must end within 120 s with a non-zero exit, and the ranks still running must say
#     which phase (step N) and which collective they waited in; the stopped one does
#     not blame the others (Open MPI resumes it with SIGCONT before killing it: its watchdog
#     sees that it was itself suspended);
#  2. (np 2 only) a run that lasts longer than step_timeout_s (5 s here), making progress, is
#     not stopped.
# Usage: check_watchdog.sh TPINFER NP WORK_DIR [RANK]
set -euo pipefail
# shellcheck source=../lib/descendants.sh
source "$(dirname "$0")/../lib/descendants.sh"
bin=$1 np=$2 work=$3/watchdog-np$2 victim=${4:-$(($2 - 1))}
root=$(cd "$(dirname "$0")/../.." && pwd)
timeout_s=10 long_timeout_s=5 bound_s=120
model=(--model "$root/configs/models/llama-100m" --dummy-weights
       --tokenizer "$root/configs/tokenizers/mistral" --threads 1)
rm -rf "$work"
mkdir -p "$work"

launcher=""
stopped=""
cleanup() {  # never leave a stopped rank or a launcher behind
  if [[ -n $stopped ]]; then kill -CONT "$stopped" 2>/dev/null || true; kill -KILL "$stopped" 2>/dev/null || true; fi
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; fi
}
trap cleanup EXIT

# 1. Stop one rank mid-generation.
"$root/scripts/mpirun.sh" -np "$np" "$bin" "${model[@]}" --prompt "Once upon a time" \
    --echo=false --ignore-eos --max-new-tokens 3000 --step-timeout-s "$timeout_s" \
    >"$work/stall.out" 2>"$work/stall.err" </dev/null &
launcher=$!
# Generation has begun once the first token is on stdout (the prompt is not echoed).
for _ in $(seq 1 3000); do
  [[ -s $work/stall.out ]] && break
  kill -0 "$launcher" 2>/dev/null || { echo "FAIL: the job ended before generating"; cat "$work/stall.err"; exit 1; }
  sleep 0.1
done
[[ -s $work/stall.out ]] || { echo "FAIL: no token after 300 s"; cat "$work/stall.err"; exit 1; }
# The ranks are mpirun's children (one node); find the victim by its MPI rank.
for pid in $(descendants "$launcher"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim"; then
    stopped=$pid
  fi
done
[[ -n $stopped ]] || { echo "FAIL: rank $victim not found among mpirun's children"; exit 1; }
kill -STOP "$stopped"
t0=$SECONDS
echo "rank $victim (pid $stopped) stopped with SIGSTOP after $(wc -c <"$work/stall.out") bytes of output"
while kill -0 "$launcher" 2>/dev/null && ((SECONDS - t0 < bound_s)); do sleep 0.5; done
if kill -0 "$launcher" 2>/dev/null; then
  echo "FAIL: the job still runs $bound_s s after rank $victim was stopped (step_timeout_s=$timeout_s)"
  cat "$work/stall.err"
  exit 1
fi
rc=0
wait "$launcher" || rc=$?
launcher=""
elapsed=$((SECONDS - t0))
# Open MPI resumes the stopped rank and sends it SIGTERM, then SIGKILL: a rank that catches
# SIGTERM for an orderly stop (every mode does) lives until the SIGKILL, a few seconds later.
alive=yes
for _ in $(seq 1 60); do
  if ! kill -0 "$stopped" 2>/dev/null || grep -q zombie "/proc/$stopped/status" 2>/dev/null; then
    alive=no
    break
  fi
  sleep 0.5
done
echo "job ended $elapsed s after the stop, exit $rc; stopped rank still alive: $alive"
((rc != 0)) || { echo "FAIL: exit 0 after a rank was stopped"; cat "$work/stall.err"; exit 1; }
grep "watchdog:" "$work/stall.err" || true
grep -qE "\[rank [0-9]+\] watchdog: no progress for [0-9.]+ s \(step_timeout_s=$timeout_s\) in step [0-9]+, waiting in " \
    "$work/stall.err" || { echo "FAIL: no watchdog line naming the step and the wait"; cat "$work/stall.err"; exit 1; }
if grep -q "\[rank $victim\] watchdog" "$work/stall.err"; then
  echo "FAIL: the stopped rank $victim blamed the others when resumed"
  exit 1
fi
n_said=$(grep -c "watchdog: no progress" "$work/stall.err")
echo "PASS: $n_said of $((np - 1)) running rank(s) named where they waited; exit $rc in $elapsed s"
[[ $alive == no ]] || { echo "FAIL: the stopped rank outlived the job"; exit 1; }
stopped=""

# 2. Longer than the timeout in total, progressing all along: not stopped.
if [[ $np == 2 ]]; then
  t1=$SECONDS
  timeout 600 "$root/scripts/mpirun.sh" -np "$np" "$bin" "${model[@]}" --prompt "Once upon a time" \
      --echo=false --ignore-eos --max-new-tokens 120 --step-timeout-s "$long_timeout_s" \
      --metrics-json "$work/long.json" >"$work/long.out" 2>"$work/long.err" </dev/null ||
    { echo "FAIL: the long run failed"; cat "$work/long.err"; exit 1; }
  ! grep -q "watchdog" "$work/long.err" || { echo "FAIL: the watchdog spoke"; exit 1; }
  /usr/bin/python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['generated_tokens']==120, m['generated_tokens']" "$work/long.json"
  echo "PASS: a $((SECONDS - t1)) s run (step_timeout_s=$long_timeout_s) generated all 120 tokens"
  ((SECONDS - t1 > long_timeout_s)) ||
    echo "note: this machine ran it faster than step_timeout_s, so it shows less than intended"
fi

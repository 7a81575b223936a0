#!/usr/bin/env bash
# Faults of a pipeline stage (issue 19), pp 2 x tp 2 under mpirun -np 4, the 100M Llama shape
# with dummy weights, mid-generation:
#  stop: rank 2 (stage 1's tp rank 0, which sends the logits to the leader) is stopped with
#        SIGSTOP, step_timeout_s 10: the job ends within 120 s with a non-zero exit, and the
#        leader's watchdog names the wait on pipeline stage 1 of 2 and rank 2 (the receive of
#        its logits, or the send of activations to it);
#  kill: rank 2 is killed with SIGKILL: the job ends within 30 s with a non-zero exit, and
#        mpirun's report names rank 2 (the layout table in the log maps it to its stage).
# Usage: check_pp_faults.sh TPINFER WORK_DIR stop|kill
set -euo pipefail
# shellcheck source=../lib/descendants.sh
source "$(dirname "$0")/../lib/descendants.sh"
bin=$1 mode=$3 work=$2/pp-faults-$3 victim=2
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"
mkdir -p "$work"
launcher="" victim_pid=""
cleanup() {
  if [[ -n $victim_pid ]]; then kill -CONT "$victim_pid" 2>/dev/null || true; kill -KILL "$victim_pid" 2>/dev/null || true; fi
  if [[ -n $launcher ]]; then kill -TERM "$launcher" 2>/dev/null || true; fi
}
trap cleanup EXIT

"$root/scripts/mpirun.sh" -np 4 "$bin" --model "$root/configs/models/llama-100m" --dummy-weights \
    --tokenizer "$root/configs/tokenizers/mistral" --threads 1 --pp 2 --tp 2 \
    --prompt "Once upon a time" --echo=false --ignore-eos --max-new-tokens 3000 \
    --step-timeout-s 10 >"$work/out" 2>"$work/err" </dev/null &
launcher=$!
for _ in $(seq 1 3000); do
  [[ -s $work/out ]] && break
  kill -0 "$launcher" 2>/dev/null || { echo "FAIL: the job ended before generating"; cat "$work/err"; exit 1; }
  sleep 0.1
done
[[ -s $work/out ]] || { echo "FAIL: no token after 300 s"; cat "$work/err"; exit 1; }
grep -q "layout: 4 rank(s) = dp 1 x pp 2 x tp 2" "$work/err" || { echo "FAIL: no layout table"; exit 1; }
for pid in $(descendants "$launcher"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim"; then
    victim_pid=$pid
  fi
done
[[ -n $victim_pid ]] || { echo "FAIL: rank $victim not found among mpirun's children"; exit 1; }
if [[ $mode == stop ]]; then kill -STOP "$victim_pid"; bound_s=120; else kill -KILL "$victim_pid"; bound_s=30; fi
t0=$SECONDS
echo "rank $victim (pid $victim_pid, stage 1) got SIG$( [[ $mode == stop ]] && echo STOP || echo KILL) after $(wc -c <"$work/out") bytes of output"
while kill -0 "$launcher" 2>/dev/null && ((SECONDS - t0 < bound_s)); do sleep 0.5; done
if kill -0 "$launcher" 2>/dev/null; then
  echo "FAIL: the job still runs $bound_s s later"; cat "$work/err"; exit 1
fi
rc=0
wait "$launcher" || rc=$?
launcher=""
echo "job ended $((SECONDS - t0)) s later, exit $rc"
((rc != 0)) || { echo "FAIL: exit 0"; cat "$work/err"; exit 1; }
if [[ $mode == stop ]]; then
  grep "watchdog:" "$work/err" || true
  # The leader waits on stage 1 either for the logits or (mid-hand-off) to send it activations.
  grep -qE "\[rank 0\] watchdog: no progress .* waiting in a (receive of logits from|send of activations to) pipeline stage 1 of 2 from rank 2" "$work/err" ||
    { echo "FAIL: the leader's watchdog did not name the wait on stage 1 (rank 2)"; cat "$work/err"; exit 1; }
else
  grep -iE "rank 2|stage 1" "$work/err" | head -5
  grep -qE "rank 2" "$work/err" || { echo "FAIL: nothing names rank 2"; cat "$work/err"; exit 1; }
fi
victim_pid=""
echo "PASS"

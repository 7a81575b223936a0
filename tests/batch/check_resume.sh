#!/usr/bin/env bash
# Kill a batch job part-way, rerun it with the same output file, and check that the file ends
# with every id exactly once and every result equal to an uninterrupted run (greedy).
#   MODE term       SIGTERM to mpirun (what `scancel` / preemption does to a job step): the job
#                   must stop within a bound, exit non-zero and leave only whole lines. Before
#                   that, a second job on the same output file must be refused (file lock).
#   MODE term-rank3 SIGTERM to world rank 3 alone (a follower of replica 1; with LAYOUT
#                   "--pp 2 --tp 2", stage 1's tp rank 1, whose flag travels with the step plans
#                   and comes back in a step's reply): the stop must reach rank 0 and end the job
#                   the same orderly way.
#   MODE kill       SIGKILL to every rank (OOM killer, node loss); then a torn half line is
#                   appended, as if a write had been cut: the rerun must drop it and redo that id.
# Usage: check_resume.sh MODE TPINFER CONVERTED_DIR WORK_DIR [LAYOUT (default "--tp 2")]
set -euo pipefail
# shellcheck source=../lib/descendants.sh
source "$(dirname "$0")/../lib/descendants.sh"
mode=$1 bin=$2 model=$3 layout=${5:---tp 2}
work=$4/resume-$1${5:+-$(tr -d ' -' <<<"$5")}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check="/usr/bin/python3 $here/batch_check.py"
rm -rf "$work"
mkdir -p "$work"
n=160
if [[ $mode == term ]]; then n=320; fi  # room for the second-job check before the signal
$check many $n 160 "$work/in.jsonl"
# shellcheck disable=SC2206  # the layout's flags, one per word
common=(--model "$model" $layout --input "$work/in.jsonl" --batch-size 8 --ignore-eos
        --progress-interval-s 1)

job_pid=""
cleanup() {  # only what this script started: the ranks of its mpirun, then mpirun
  if [[ -n $job_pid ]] && kill -0 "$job_pid" 2>/dev/null; then
    pkill -KILL -P "$job_pid" 2>/dev/null || true
    kill -KILL "$job_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

# Reference: the same job, uninterrupted.
timeout 300 "$root/scripts/mpirun.sh" -np 4 "$bin" "${common[@]}" --output "$work/ref.jsonl" \
    </dev/null 2>"$work/ref.err"
$check exactly-once "$work/in.jsonl" "$work/ref.jsonl"

# The interrupted run.
"$root/scripts/mpirun.sh" -np 4 "$bin" "${common[@]}" --output "$work/out.jsonl" \
    </dev/null >"$work/run1.out" 2>"$work/run1.err" &
job_pid=$!
for _ in $(seq 1200); do  # up to 120 s for the first results
  (($(lines "$work/out.jsonl") >= 12)) && break
  kill -0 "$job_pid" 2>/dev/null || break
  sleep 0.1
done
(($(lines "$work/out.jsonl") >= 12)) || { echo "FAIL: no results after 120 s"; cat "$work/run1.err"; exit 1; }

if [[ $mode == term ]]; then
  # A second job on the same output while the first is still writing it is refused.
  rc=0
  timeout 120 "$root/scripts/mpirun.sh" -np 4 "$bin" "${common[@]}" --output "$work/out.jsonl" \
      </dev/null 2>"$work/second.err" || rc=$?
  ((rc != 0)) && grep -q "another job is writing this output file" "$work/second.err" ||
    { echo "FAIL: a second job on the same output was not refused"; cat "$work/second.err"; exit 1; }
  kill -0 "$job_pid" 2>/dev/null || { echo "FAIL: the first job ended too soon"; exit 1; }
  echo "a second job on the same output file: refused (exit $rc)"
fi

t0=$(date +%s.%N)
case $mode in
  term) kill -TERM "$job_pid" ;;
  term-rank3)
    target=""
    for p in $(descendants "$job_pid"); do
      if tr '\0' '\n' <"/proc/$p/environ" | grep -qx "OMPI_COMM_WORLD_RANK=3"; then target=$p; fi
    done
    [[ -n $target ]] || { echo "FAIL: rank 3 not found among the children of mpirun"; exit 1; }
    kill -TERM "$target" ;;
  kill)
    # shellcheck disable=SC2046  # one pid per word
    kill -KILL $(descendants "$job_pid") ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
rc=0
for _ in $(seq 600); do kill -0 "$job_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job_pid" 2>/dev/null; then echo "FAIL: the job did not end within 60 s of the signal"; exit 1; fi
wait "$job_pid" || rc=$?
job_pid=""
took=$(echo "$(date +%s.%N) - $t0" | bc)
done1=$(lines "$work/out.jsonl")
echo "run 1: signal ($mode) after $done1 of $n results; exit code $rc after ${took}s"
sed 's/^/  run1: /' "$work/run1.err" | grep -vE "model llama|memory plan|loaded in" | tail -8
((rc != 0)) || { echo "FAIL: an interrupted job must exit non-zero"; exit 1; }
((done1 < n)) || { echo "FAIL: the job finished before the signal; nothing to resume"; exit 1; }
if [[ -s $work/out.jsonl && $(tail -c 1 "$work/out.jsonl" | od -An -c | tr -d ' ') != '\n' ]]; then
  echo "FAIL: the interrupted job left a torn last line"
  exit 1
fi
if [[ $mode == term* ]]; then
  grep -q "interrupted by a stop signal" "$work/run1.err" ||
    { echo "FAIL: no 'interrupted' message"; exit 1; }
  (($(echo "$took < 15" | bc))) || { echo "FAIL: took ${took}s to stop after SIGTERM"; exit 1; }
fi
if [[ $mode == kill ]]; then
  # A write cut short: half a result line of an id that is not done yet.
  torn_id=$(/usr/bin/python3 - "$work/in.jsonl" "$work/out.jsonl" <<'PY'
import json, sys
done = {json.loads(l)["id"] for l in open(sys.argv[2])}
print(next(json.loads(l)["id"] for l in open(sys.argv[1]) if json.loads(l)["id"] not in done))
PY
)
  printf '{"id":"%s","text":"Once up' "$torn_id" >>"$work/out.jsonl"
fi

# The rerun with the same output file completes the rest.
timeout 300 "$root/scripts/mpirun.sh" -np 4 "$bin" "${common[@]}" --output "$work/out.jsonl" \
    </dev/null 2>"$work/run2.err"
grep "batch: .* already in" "$work/run2.err"
grep -q "$done1 already in" "$work/run2.err" || { echo "FAIL: the rerun did not skip $done1 done ids"; exit 1; }
if [[ $mode == kill ]]; then
  grep -q "dropping a torn last line" "$work/run2.err" || { echo "FAIL: torn line not reported"; exit 1; }
fi
$check exactly-once "$work/in.jsonl" "$work/out.jsonl"
$check same "$work/ref.jsonl" "$work/out.jsonl"
echo "PASS: $mode after $done1/$n, resumed to $n/$n, equal to the uninterrupted run"

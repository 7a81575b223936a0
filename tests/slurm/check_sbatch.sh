#!/usr/bin/env bash
# The sbatch scripts for real: a one-node SLURM cluster (munged, slurmctld, slurmd) is started
# under the build tree with scripts/slurm_local.sh, slurm/tpinfer-cpu.sbatch is submitted with
# a batch-inference config (4 tasks: dp=2 x tp=2 on the CPU backend, srun --mpi=pmix), and
#   MODE smoke          the job must reach COMPLETED with exit 0 within a bound, its log must be
#                       named after the job, and the results must hold every id once, equal to
#                       the same job run directly under mpirun;
#   MODE cancel-resume  the job is cancelled part-way with scancel (SLURM's SIGTERM to every
#                       task, as on preemption): it must end CANCELLED with only whole lines
#                       written; the same job submitted again completes the rest, every id once;
#   MODE gpu-scripts    the GPU scripts, run on the CPU backend (the cluster has 4 fake GPUs):
#                       tpinfer-1node-4gpu.sbatch must get its 4 GPUs (CUDA_VISIBLE_DEVICES) and
#                       complete; tpinfer-multinode.sbatch (on the one node) must take TPINFER_TP.
#   MODE pipeline       slurm/tpinfer-pipeline.sbatch on the one node with TPINFER_PP=2 and
#                       TPINFER_TP=2 (MODEL: converted --pp 2 --tp 2): it must complete, log the
#                       layout dp 1 x pp 2 x tp 2 and write every id once.
#   MODE server         slurm/tpinfer-server.sbatch (CPU backend, an API key, a free port): the
#                       endpoint file must appear, a completion through it must answer (and 401
#                       without the key); after scancel the job must leave the queue CANCELLED
#                       or COMPLETED within a bound, the server having seen the SIGTERM.
# The daemons are stopped by pid on every exit path (trap). Exit 77 (skipped) without SLURM or
# root. Usage: check_sbatch_cpu.sh MODE TPINFER CONVERTED_TP2_DIR WORK_DIR
set -euo pipefail
mode=$1 bin=$2 model=$3 work=$4/slurm-$1
root=$(cd "$(dirname "$0")/../.." && pwd)
check="/usr/bin/python3 $root/tests/batch/batch_check.py"
for tool in sbatch slurmctld slurmd munged; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (TPINFER_WITH_SLURM=1 scripts/install_deps.sh)"; exit 77; }
done
[[ $(id -u) -eq 0 ]] || { echo "SKIP: the local SLURM cluster needs root"; exit 77; }

rm -rf "$work"
mkdir -p "$work"
state=$work/cluster
cleanup() {
  local rc=$?
  if ((rc != 0)) && [[ -d $state/log ]]; then
    echo "--- slurmctld.log (tail)"; tail -n 15 "$state/log/slurmctld.log" 2>/dev/null || true
    echo "--- slurmd.log (tail)"; tail -n 15 "$state/log/slurmd.log" 2>/dev/null || true
  fi
  "$root/scripts/slurm_local.sh" stop "$state" || true
  if "$root/scripts/slurm_local.sh" status "$state" >/dev/null 2>&1; then
    echo "FAIL: daemons still running after stop"
    rc=1
  fi
  exit $rc
}
trap cleanup EXIT
"$root/scripts/slurm_local.sh" start "$state"
export SLURM_CONF=$state/slurm.conf

if [[ $mode != cancel-resume ]]; then
  n=20 max_new=40
else
  n=240 max_new=160
fi
$check many $n $max_new "$work/in.jsonl"
cat >"$work/job.yaml" <<EOF
# Batch inference on the bundled model, 2 replicas of tp=2 (4 tasks of slurm/tpinfer-cpu.sbatch)
model: $model
input: $work/in.jsonl
tp: 2
batch_size: 4
ignore_eos: true
progress_interval_s: 1
EOF

# submit NAME: prints the job id; output file and binary come through the environment.
submit() {
  TPINFER_BIN=$bin TPINFER_OUTPUT=$work/results.jsonl \
    sbatch --parsable --chdir="$work" --job-name="$1" "$root/slurm/tpinfer-cpu.sbatch" \
    "$work/job.yaml"
}
job_state() { scontrol show job "$1" | grep -oE "JobState=[A-Z_]+" | cut -d= -f2; }
job_exit() { scontrol show job "$1" | grep -oE " ExitCode=[0-9:]+" | cut -d= -f2; }
wait_job() {  # wait_job ID SECONDS: until the job has left the queue
  local id=$1 deadline=$((SECONDS + $2))
  while [[ -n $(squeue -h -j "$id" 2>/dev/null) ]]; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: job $id still queued/running after $2 s"; scontrol show job "$id"; exit 1
    fi
    sleep 0.5
  done
}
lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

if [[ $mode == gpu-scripts ]]; then
  export OMPI_MCA_mpi_yield_when_idle=1  # 4 tasks on this machine's cores (passed through)
  for script in 1node-4gpu multinode; do
    rm -f "$work/results.jsonl"
    jid=$(TPINFER_BIN=$bin TPINFER_OUTPUT=$work/results.jsonl TPINFER_TP=2 \
          sbatch --parsable --chdir="$work" --nodes=1 --cpus-per-task=1 \
          "$root/slurm/tpinfer-$script.sbatch" "$work/job.yaml" --backend cpu)
    wait_job "$jid" 240
    name=tpinfer
    if [[ $script == multinode ]]; then name=tpinfer-multinode; fi
    log=$work/$name-$jid.out  # the scripts' own job names
    sed 's/^/  job log: /' "$log" | grep -vE "memory plan|loaded in|model llama" || true
    [[ $(job_state "$jid") == COMPLETED && $(job_exit "$jid") == 0:0 ]] ||
      { echo "FAIL: $script job $jid ended $(job_state "$jid")"; exit 1; }
    grep -q "NCCL settings: NCCL_DEBUG=WARN" "$log"
    grep -q "tp=2 dp=2, backend cpu" "$log"
    if [[ $script == 1node-4gpu ]]; then grep -q "GPUs 0,1,2,3" "$log"; fi
    $check exactly-once "$work/in.jsonl" "$work/results.jsonl"
    echo "slurm/tpinfer-$script.sbatch: job $jid COMPLETED"
  done
  echo "PASS"
  exit 0
fi

if [[ $mode == pipeline ]]; then
  export OMPI_MCA_mpi_yield_when_idle=1
  jid=$(TPINFER_BIN=$bin TPINFER_OUTPUT=$work/results.jsonl TPINFER_TP=2 TPINFER_PP=2 \
        sbatch --parsable --chdir="$work" --nodes=1 --cpus-per-task=1 \
        "$root/slurm/tpinfer-pipeline.sbatch" "$work/job.yaml" --backend cpu)
  wait_job "$jid" 240
  log=$work/tpinfer-pipeline-$jid.out
  sed 's/^/  job log: /' "$log" | grep -vE "memory plan|loaded in|model llama" || true
  [[ $(job_state "$jid") == COMPLETED && $(job_exit "$jid") == 0:0 ]] ||
    { echo "FAIL: pipeline job $jid ended $(job_state "$jid")"; exit 1; }
  grep -q "layout: 4 rank(s) = dp 1 x pp 2 x tp 2" "$log"
  $check exactly-once "$work/in.jsonl" "$work/results.jsonl"
  echo "slurm/tpinfer-pipeline.sbatch: job $jid COMPLETED"
  echo "PASS"
  exit 0
fi

if [[ $mode == server ]]; then
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')
  key=sk-slurm-ctest endpoint_file=$work/server.endpoint
  printf '# The bundled model served by 2 replicas of tp=2\nmodel: %s\ntp: 2\n' "$model" \
    >"$work/server.yaml"
  jid=$(TPINFER_BIN=$bin TPINFER_PORT=$port TPINFER_API_KEY=$key TPINFER_BACKEND=cpu \
        TPINFER_ENDPOINT_FILE=$endpoint_file \
        sbatch --parsable --chdir="$work" "$root/slurm/tpinfer-server.sbatch" "$work/server.yaml")
  log=$work/tpinfer-server-$jid.out
  echo "submitted server job $jid (port $port)"
  deadline=$((SECONDS + 240))
  until [[ -s $endpoint_file ]]; do
    if ((SECONDS >= deadline)) || [[ -z $(squeue -h -j "$jid" 2>/dev/null) ]]; then
      echo "FAIL: no endpoint file from job $jid in time"; cat "$log" 2>/dev/null; exit 1
    fi
    sleep 0.5
  done
  url=$(cat "$endpoint_file")
  [[ $url == "http://$(hostname):$port/v1" ]] || { echo "FAIL: endpoint '$url'"; exit 1; }
  echo "endpoint file: $url"
  answer=$(curl -sS --max-time 60 "$url/completions" -H "Authorization: Bearer $key" \
           -H 'Content-Type: application/json' \
           -d '{"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}')
  echo "curl $url/completions: $answer"
  /usr/bin/python3 -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["object"] == "text_completion" and r["choices"][0]["text"] and r["usage"]["completion_tokens"] >= 1, r' "$answer"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$url/models")
  [[ $code == 401 ]] || { echo "FAIL: /v1/models without the key answered $code, expected 401"; exit 1; }
  t0=$SECONDS
  scancel "$jid"
  wait_job "$jid" 120
  state_now=$(job_state "$jid")
  sed 's/^/  job log: /' "$log" | grep -vE "memory plan|loaded in|model llama" || true
  [[ $state_now == CANCELLED || $state_now == COMPLETED ]] ||
    { echo "FAIL: job $jid ended $state_now after scancel"; exit 1; }
  grep -q "endpoint: $url" "$log" || { echo "FAIL: the log does not name the endpoint"; exit 1; }
  grep -q "serving the OpenAI API" "$log" || { echo "FAIL: no 'serving' line in the log"; exit 1; }
  grep -q "stop requested (SIGTERM)" "$log" || { echo "FAIL: tpinfer did not see the SIGTERM"; exit 1; }
  grep -q "server stopped (SIGTERM)" "$log" || { echo "FAIL: no 'server stopped' line"; exit 1; }
  [[ ! -e $endpoint_file ]] || { echo "FAIL: the endpoint file outlived the job"; exit 1; }
  echo "PASS: server job $jid answered at $url, ended $state_now $((SECONDS - t0)) s after scancel"
  exit 0
fi

jid=$(submit tpinfer-ctest)
echo "submitted job $jid ($mode)"
if [[ $mode == smoke ]]; then
  wait_job "$jid" 240
  state_now=$(job_state "$jid")
  log=$work/tpinfer-ctest-$jid.out
  sed 's/^/  job log: /' "$log" | grep -vE "memory plan|loaded in" || true
  [[ $state_now == COMPLETED && $(job_exit "$jid") == 0:0 ]] ||
    { echo "FAIL: job $jid ended $state_now, exit $(job_exit "$jid")"; exit 1; }
  grep -q "batch: $n/$n result(s) written to $work/results.jsonl" "$log"
  grep -q "world 4 rank(s) on 1 node(s): tp=2 dp=2, backend cpu" "$log"
  grep -q "tpinfer job $jid finished with exit code 0" "$log"
  $check exactly-once "$work/in.jsonl" "$work/results.jsonl"
  # The same job under mpirun directly gives the same results.
  timeout 120 "$root/scripts/mpirun.sh" -np 4 "$bin" "$work/job.yaml" \
      --output "$work/direct.jsonl" </dev/null 2>"$work/direct.err"
  $check same "$work/direct.jsonl" "$work/results.jsonl"
  echo "PASS: job $jid COMPLETED, exit 0:0, log $(basename "$log"), $n results equal to mpirun's"
  exit 0
fi

# cancel-resume: cancel once a few results are in.
deadline=$((SECONDS + 180))
until (($(lines "$work/results.jsonl") >= 12)); do
  if ((SECONDS >= deadline)) || [[ -z $(squeue -h -j "$jid" 2>/dev/null) ]]; then
    echo "FAIL: no results from job $jid in time"; cat "$work"/tpinfer-ctest-"$jid".out; exit 1
  fi
  sleep 0.2
done
t0=$SECONDS
scancel "$jid"
wait_job "$jid" 60
took=$((SECONDS - t0))
done1=$(lines "$work/results.jsonl")
log=$work/tpinfer-ctest-$jid.out
sed 's/^/  job log: /' "$log" | grep -vE "memory plan|loaded in|model llama" | tail -8 || true
[[ $(job_state "$jid") == CANCELLED ]] || { echo "FAIL: job $jid ended $(job_state "$jid")"; exit 1; }
((done1 < n)) || { echo "FAIL: the job finished before it was cancelled"; exit 1; }
[[ $(tail -c 1 "$work/results.jsonl" | od -An -c | tr -d ' ') == '\n' ]] ||
  { echo "FAIL: a torn line after scancel"; exit 1; }
grep -q "stop requested (SIGTERM)" "$log" || { echo "FAIL: tpinfer did not see the SIGTERM"; exit 1; }
echo "job $jid: cancelled after $done1/$n results, gone from the queue in ${took}s, whole lines only"

jid2=$(submit tpinfer-ctest)
wait_job "$jid2" 300
log2=$work/tpinfer-ctest-$jid2.out
grep -E "already in|result\(s\) written" "$log2" | sed 's/^/  job log: /'
[[ $(job_state "$jid2") == COMPLETED && $(job_exit "$jid2") == 0:0 ]] ||
  { echo "FAIL: resubmitted job $jid2 ended $(job_state "$jid2")"; cat "$log2"; exit 1; }
grep -q "$done1 already in" "$log2"
$check exactly-once "$work/in.jsonl" "$work/results.jsonl"
echo "PASS: cancelled at $done1/$n, resubmitted job $jid2 completed the rest, every id once"

#!/usr/bin/env bash
# The watchdog's default, adaptive limit (issue 21), with its floor lowered by the test-only
# TPINFER_WATCHDOG_FLOOR_S so each case is quick. A 100M Llama shape with dummy weights:
#   a follower (tp 2) and a replica leader (dp 2 x tp 1: the leader of replica 1, which only rank
#   0 waits on) stopped with SIGSTOP in single-prompt (follower; the only leader is rank 0),
#   batch and server modes: the job ends non-zero, a running rank names the stopped rank or
#   where it waited, and the detection time is printed;
#   a prompt whose prefill takes longer than the floor (1 s) is not killed.
# Usage: check_watchdog_adaptive.sh TPINFER WORK_DIR
set -euo pipefail
# shellcheck source=../lib/descendants.sh
source "$(dirname "$0")/../lib/descendants.sh"
bin=$1 work=$2/watchdog-adaptive
root=$(cd "$(dirname "$0")/../.." && pwd)
floor=3 bound_s=90
model=(--model "$root/configs/models/llama-100m" --dummy-weights
       --tokenizer "$root/configs/tokenizers/mistral" --threads 1)
rm -rf "$work"
mkdir -p "$work"
launcher="" stopped=""
cleanup() {
  if [[ -n $stopped ]]; then kill -CONT "$stopped" 2>/dev/null || true; kill -KILL "$stopped" 2>/dev/null || true; fi
  if [[ -n $launcher ]]; then kill -KILL "$launcher" 2>/dev/null || true; fi
}
trap cleanup EXIT
export TPINFER_WATCHDOG_FLOOR_S=$floor TPINFER_LAUNCH_QUIET=1
results=()

# run_case NAME NP VICTIM_RANK READY ARGS...: READY = FILE (non-empty) or FILE:REGEX (found in
# it) says generation has begun.
is_ready() {
  if [[ $1 == *:* ]]; then grep -qE "${1#*:}" "${1%%:*}" 2>/dev/null; else [[ -s $1 ]]; fi
}
run_case() {
  local name=$1 np=$2 victim=$3 ready=$4
  shift 4
  local out=$work/$name
  "$root/scripts/mpirun.sh" -np "$np" "$bin" "${model[@]}" "$@" >"$out.out" 2>"$out.err" </dev/null &
  launcher=$!
  for _ in $(seq 1 3000); do
    is_ready "$ready" && break
    kill -0 "$launcher" 2>/dev/null || { echo "FAIL $name: ended before generating"; tail "$out.err"; exit 1; }
    sleep 0.1
  done
  is_ready "$ready" || { echo "FAIL $name: nothing generated in 300 s"; exit 1; }
  sleep 4  # a few steps measured
  for pid in $(descendants "$launcher"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim"; then
      stopped=$pid
    fi
  done
  [[ -n $stopped ]] || { echo "FAIL $name: rank $victim not found"; exit 1; }
  kill -STOP "$stopped"
  local t0=$SECONDS
  while kill -0 "$launcher" 2>/dev/null && ((SECONDS - t0 < bound_s)); do sleep 0.2; done
  if kill -0 "$launcher" 2>/dev/null; then
    echo "FAIL $name: still running $bound_s s after rank $victim was stopped"; tail "$out.err"; exit 1
  fi
  local rc=0
  wait "$launcher" || rc=$?
  launcher=""
  local t=$((SECONDS - t0))
  kill -CONT "$stopped" 2>/dev/null || true
  kill -KILL "$stopped" 2>/dev/null || true
  stopped=""
  ((rc != 0)) || { echo "FAIL $name: exit 0"; exit 1; }
  local line
  line=$(grep -m1 "watchdog:" "$out.err" || true)
  [[ -n $line ]] || { echo "FAIL $name: no watchdog line"; tail "$out.err"; exit 1; }
  # A rank waiting in a collective names its step and the collective (MPI cannot say which
  # member is missing); one waiting on a replica leader's messages names that rank.
  if ! grep -qE "from rank $victim|in step [0-9]+, waiting in " <<<"$line"; then
    echo "FAIL $name: the watchdog line names neither rank $victim nor a wait: $line"; exit 1
  fi
  echo "PASS $name: rank $victim stopped -> exit $rc after $t s: $line"
  results+=("| $name | $victim | $t | ${line#*watchdog: } |")
}

# Server mode: a streaming request keeps a replica busy.
serve_case() {
  local name=$1 np=$2 victim=$3
  shift 3
  local port
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -f "$work/$name.stream"
  ( for _ in $(seq 1 600); do curl -s "127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
    for i in 1 2 3 4; do
      curl -sN "127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": true, "stream": true}' \
        >>"$work/$name.stream" 2>/dev/null &
    done; wait ) &
  run_case "$name" "$np" "$victim" "$work/$name.stream" --serve "127.0.0.1:$port" "$@"
}

printf '{"id": "%d", "prompt": "Once upon a time"}\n' $(seq 1 8) >"$work/in.jsonl"
run_case single_follower 2 1 "$work/single_follower.out" --prompt "Once upon a time" --echo=false --ignore-eos --max-new-tokens 3000
run_case batch_follower 2 1 "$work/batch_follower.err:loaded in" --input "$work/in.jsonl" --output "$work/b1.jsonl" --ignore-eos --max-new-tokens 3000 --batch-size 4 --progress-interval-s 1
run_case batch_leader 2 1 "$work/batch_leader.err:loaded in" --tp 1 --input "$work/in.jsonl" --output "$work/b2.jsonl" --ignore-eos --max-new-tokens 3000 --batch-size 2 --progress-interval-s 1
serve_case server_follower 2 1
serve_case server_leader 2 1 --tp 1

# A prefill longer than the floor is not killed: a 1,500-token prompt on one rank with the floor
# at 1 s (beats come per layer).
prompt=$(/usr/bin/python3 -c 'print(" ".join(["the cat sat on the mat"] * 250))')
t1=$SECONDS
TPINFER_WATCHDOG_FLOOR_S=1 "$root/scripts/mpirun.sh" -np 1 "$bin" "${model[@]}" --prompt "$prompt" \
    --echo=false --max-new-tokens 4 --metrics-json "$work/long.json" >"$work/long.out" 2>"$work/long.err" </dev/null ||
  { echo "FAIL long prefill: the job failed"; tail "$work/long.err"; exit 1; }
! grep -q watchdog "$work/long.err" || { echo "FAIL long prefill: the watchdog spoke"; exit 1; }
ttft=$(/usr/bin/python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(round(m.get("ttft_ms", 0)/1000, 1))' "$work/long.json")
echo "PASS long prefill: ${ttft} s to the first token with the floor at 1 s, not killed ($((SECONDS - t1)) s in all)"

echo
echo "| case | stopped rank | detected after (s) | watchdog line |"
echo "|---|---:|---:|---|"
printf '%s\n' "${results[@]}"

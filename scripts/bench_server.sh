#!/usr/bin/env bash
# Starts `tpinfer --serve` under scripts/mpirun.sh, waits for /health, runs scripts/bench_server.py
# against it, then stops the server (SIGTERM to the ranks, as srun does) and prints the table.
#
#   scripts/bench_server.sh NP LABEL -- TPINFER_ARGS... [-- BENCH_ARGS...]
#   scripts/bench_server.sh 4 stories260K -- --model build/test-models/stories260K-tp2 --tp 2
#   scripts/bench_server.sh 2 llama-100m -- --model configs/models/llama-100m --dummy-weights \
#       --tokenizer configs/tokenizers/mistral -- --concurrency 1 8 32 --requests 32
#
# Environment: TPINFER_BIN (default build/tpinfer), TPINFER_PORT (default: a free port),
# BENCH_HEALTH_WAIT_S (default 300), BENCH_PY (default scripts/bench_server.py; e.g.
# scripts/bench_kv.py for the paged KV cache's benchmarks: BENCH_ARGS then start with its mode).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if (($# < 3)) || [[ $3 != -- ]]; then sed -n 2,10p "$0" >&2; exit 2; fi
np=$1 label=$2
shift 3
server_args=() bench_args=()
while (($#)) && [[ $1 != -- ]]; do server_args+=("$1"); shift; done
(($#)) && shift
bench_args=("$@")
bin=${TPINFER_BIN:-$root/build/tpinfer}
port=${TPINFER_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
url=http://127.0.0.1:$port
log=$(mktemp "${TMPDIR:-/tmp}/bench_server.XXXXXX.log")

"$root/scripts/mpirun.sh" -np "$np" "$bin" "${server_args[@]}" --serve "127.0.0.1:$port" \
    >"$log" 2>&1 </dev/null &
launcher=$!
stop_server() {  # SIGTERM to every rank (mpirun's children), then wait for mpirun
  kill -0 "$launcher" 2>/dev/null || return 0
  local pid
  for pid in $(pgrep -P "$launcher"); do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 600); do kill -0 "$launcher" 2>/dev/null || return 0; sleep 0.1; done
  kill -TERM "$launcher" 2>/dev/null || true
}
trap stop_server EXIT

deadline=$((SECONDS + ${BENCH_HEALTH_WAIT_S:-300}))
until curl -sf "$url/health" >/dev/null 2>&1; do
  if ! kill -0 "$launcher" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "bench_server.sh: the server did not answer $url/health (log $log):" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
grep -m1 "serving the OpenAI API" "$log" >&2 || true
python3 "${BENCH_PY:-$root/scripts/bench_server.py}" --url "$url" --label "$label" "${bench_args[@]}"

# Sourced by the batch checks that compare with single-prompt runs:
#   single_refs BIN MODEL IN_JSONL OUT_DIR
# runs each request of IN_JSONL alone in single-prompt mode (np 2, the request's own settings,
# from batch_check.py single-args) into OUT_DIR/<id>.{out,err,json}, for batch_check.py vs-single.
single_refs() {
  local bin=$1 model=$2 in=$3 out=$4 here root id flags
  local -a args
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  root=$(cd "$here/../.." && pwd)
  mkdir -p "$out"
  while IFS=$'\t' read -r id flags; do
    eval "args=($flags)"
    timeout 120 "$root/scripts/mpirun.sh" -np 2 "$bin" --model "$model" "${args[@]}" \
        --metrics-json "$out/$id.json" </dev/null >"$out/$id.out" 2>"$out/$id.err"
  done < <(/usr/bin/python3 "$here/batch_check.py" single-args "$in")
}

#!/usr/bin/env bash
# Multi-node, as faithfully as one machine allows: Open MPI starts one orted per "node" through
# fake_node_ssh.sh, each node in its own UTS + mount namespace (own host name, private /dev/shm
# and TMPDIR), ranks of different nodes talking over TCP on loopback. Checked:
#  1. dp=2 x tp=2 on 2 nodes x 2 ranks: MPI reports 2 nodes and node-local ranks 0,1 on each
#     (even with the SAME host name on both nodes: nodes come from MPI, not from names), each tp
#     group stays on its node, and every result equals the one-node run;
#  2. tp=4 over the 2 nodes is refused (a tp group would span nodes), and runs when allowed with
#     TPINFER_ALLOW_CROSS_NODE_TP=1, equal to the one-node tp=4 run;
#  3. 3 + 1 ranks with tp=2: the second group would straddle the nodes: refused.
# Exit 77 (skipped) where namespaces cannot be made (not root, no unshare).
# Usage: check_multinode.sh TPINFER CONVERTED_TP2_DIR CONVERTED_TP4_DIR WORK_DIR
set -euo pipefail
bin=$1 model2=$2 model4=$3 work=$4/multinode
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check="/usr/bin/python3 $here/batch_check.py"
if [[ $(id -u) -ne 0 ]] || ! unshare --uts --mount true 2>/dev/null; then
  echo "SKIP: needs root and unshare (UTS + mount namespaces) to emulate nodes"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
export FAKE_NODE_ROOT=$work/nodes
$check many 24 40 "$work/in.jsonl"

one_node() { timeout 180 "$root/scripts/mpirun.sh" -np 4 "$bin" "$@" </dev/null; }
two_nodes() {  # two_nodes HOSTS ARGS...
  local hosts=$1
  shift
  timeout 180 "$root/scripts/mpirun.sh" -np 4 --host "$hosts" \
    --mca plm_rsh_agent "$here/fake_node_ssh.sh" --mca btl self,vader,tcp \
    --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
    -x TPINFER_ALLOW_CROSS_NODE_TP "$bin" "$@" </dev/null
}
export TPINFER_ALLOW_CROSS_NODE_TP=0

# 1. dp=2 x tp=2, one group per node.
one_node --model "$model2" --tp 2 --input "$work/in.jsonl" --output "$work/ref-tp2.jsonl" \
    --batch-size 4 2>"$work/ref-tp2.err"
for names in distinct same; do
  if [[ $names == same ]]; then export FAKE_NODE_HOSTNAME=node; else unset FAKE_NODE_HOSTNAME; fi
  two_nodes 127.0.0.2:2,127.0.0.3:2 --model "$model2" --tp 2 --input "$work/in.jsonl" \
      --output "$work/mn-$names.jsonl" --batch-size 4 --metrics-json "$work/mn-$names.json" \
      2>"$work/mn-$names.err"
  grep -q "world 4 rank(s) on 2 node(s): tp=2 dp=2" "$work/mn-$names.err" ||
    { echo "FAIL: not seen as 2 nodes"; cat "$work/mn-$names.err"; exit 1; }
  /usr/bin/python3 - "$work/mn-$names.json" "$names" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
ranks = sorted(m["ranks"], key=lambda r: r["rank"])
assert m["n_nodes"] == 2, m["n_nodes"]
assert [r["node"] for r in ranks] == [0, 0, 1, 1], ranks
assert [r["local_rank"] for r in ranks] == [0, 1, 0, 1], ranks
assert [(r["dp_rank"], r["tp_rank"]) for r in ranks] == [(0, 0), (0, 1), (1, 0), (1, 1)], ranks
hosts = [r["host"] for r in ranks]
if sys.argv[2] == "same":
    assert hosts == ["node"] * 4, hosts
else:
    assert hosts[0] == hosts[1] != hosts[2] == hosts[3], hosts
assert all(n > 0 for n in m["per_replica"]), m["per_replica"]
print(f"layout ({sys.argv[2]} host names {sorted(set(hosts))}): nodes 0,0,1,1, local ranks "
      f"0,1,0,1, requests per replica {m['per_replica']}")
PY
  $check exactly-once "$work/in.jsonl" "$work/mn-$names.jsonl"
  $check same "$work/ref-tp2.jsonl" "$work/mn-$names.jsonl"
done
unset FAKE_NODE_HOSTNAME

# 2. tp=4 across the nodes: refused, then allowed.
rc=0
two_nodes 127.0.0.2:2,127.0.0.3:2 --model "$model4" --tp 4 --input "$work/in.jsonl" \
    --output "$work/tp4-refused.jsonl" 2>"$work/tp4-refused.err" || rc=$?
((rc != 0)) || { echo "FAIL: a tp group spanning nodes was accepted"; exit 1; }
grep -qE "error: \[rank 0\] 1 of 1 tensor-parallel group\(s\) of tp=4 span nodes.*TPINFER_ALLOW_CROSS_NODE_TP=1" \
    "$work/tp4-refused.err" || { echo "FAIL: no clear refusal"; cat "$work/tp4-refused.err"; exit 1; }
[[ ! -e $work/tp4-refused.jsonl ]] || { echo "FAIL: the refused job wrote output"; exit 1; }
echo "tp=4 over 2 nodes: refused (exit $rc)"
one_node --model "$model4" --tp 4 --input "$work/in.jsonl" --output "$work/ref-tp4.jsonl" \
    --batch-size 4 2>"$work/ref-tp4.err"
TPINFER_ALLOW_CROSS_NODE_TP=1 two_nodes 127.0.0.2:2,127.0.0.3:2 --model "$model4" --tp 4 \
    --input "$work/in.jsonl" --output "$work/tp4-allowed.jsonl" --batch-size 4 \
    2>"$work/tp4-allowed.err"
grep -q "span nodes (allowed by TPINFER_ALLOW_CROSS_NODE_TP=1)" "$work/tp4-allowed.err"
$check exactly-once "$work/in.jsonl" "$work/tp4-allowed.jsonl"
$check same "$work/ref-tp4.jsonl" "$work/tp4-allowed.jsonl"
echo "tp=4 over 2 nodes with TPINFER_ALLOW_CROSS_NODE_TP=1: runs, equal to one node"

# 3. 3 + 1 ranks, tp=2: the second group straddles the nodes.
rc=0
two_nodes 127.0.0.2:3,127.0.0.3:1 --model "$model2" --tp 2 --input "$work/in.jsonl" \
    --output "$work/uneven.jsonl" 2>"$work/uneven.err" || rc=$?
((rc != 0)) || { echo "FAIL: a group straddling nodes was accepted"; exit 1; }
grep -qE "1 of 2 tensor-parallel group\(s\) of tp=2 span nodes" "$work/uneven.err" ||
  { echo "FAIL: no clear refusal"; cat "$work/uneven.err"; exit 1; }
echo "3 + 1 ranks with tp=2: refused (exit $rc)"
echo "PASS"

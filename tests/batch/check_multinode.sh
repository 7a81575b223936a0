#!/usr/bin/env bash
# Multi-node, as faithfully as one machine allows: two "nodes", each its own network namespace
# (loopback + one end of a veth pair joining them, 10.77.0.1 and 10.77.0.2), UTS namespace (own
# host name) and mount namespace (private /dev/shm and TMPDIR), through fake_node_ssh.sh. mpirun
# runs on the first node and starts the second node's orted through fake_node_ssh.sh as ssh;
# Open MPI's out-of-band and TCP traffic go over the veth addresses (oob/btl_tcp_if_include),
# shared memory only within a node. Checked:
#  1. dp=2 x tp=2 on 2 nodes x 2 ranks: MPI reports 2 nodes and node-local ranks 0,1 on each,
#     each tp group stays on its node, and every result equals the one-node run;
#  2. tp=4 over the 2 nodes is refused (a tp group would span nodes), and runs when allowed with
#     TPINFER_ALLOW_CROSS_NODE_TP=1, equal to the one-node tp=4 run, its collectives over the veth;
#  3. 3 + 1 ranks with tp=2: the second group would straddle the nodes: refused;
#  4. (with CONVERTED_PP2_TP2_DIR) pp=2 x tp=2: one pipeline stage per node, tp inside it: the
#     layout table puts stage 0 on node 0 and stage 1 on node 1, every result equals the one-node
#     tp=2 run, and the bytes over the veth per generated token are printed beside tp=4's;
#  5. (PP_BENCH=1, a benchmark rather than a check) the 100M Llama shape with dummy weights, 32
#     requests in flight (batch_size 32, 16 new tokens each): generated tokens/s and bytes between
#     the nodes per generated token for tp=4 across the nodes and pp=2 x tp=2, the latter with its
#     2 decode micro-batches in flight and with one step in flight (TPINFER_PP_MICROBATCHES=1).
# Exit 77 (skipped) only where the namespaces cannot be made (not root, no `ip netns`, no
# unshare). Every run is bounded (RUN_TIMEOUT_S, default 600 s: tp 4 across two emulated nodes
# ran at 3.5 tokens/s on a loaded 2-core machine) and the generation is short.
# Usage: check_multinode.sh TPINFER CONVERTED_TP2_DIR CONVERTED_TP4_DIR WORK_DIR
#            [CONVERTED_PP2_TP2_DIR]
set -euo pipefail
bin=$1 model2=$2 model4=$3 work=$4/multinode model_pp=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check="/usr/bin/python3 $here/batch_check.py"
run_timeout=${RUN_TIMEOUT_S:-600}
node_a=10.77.0.1 node_b=10.77.0.2
export FAKE_NODE_NETNS_PREFIX=tpinfer-mn$$-
ns_a=$FAKE_NODE_NETNS_PREFIX${node_a//./-} ns_b=$FAKE_NODE_NETNS_PREFIX${node_b//./-}

teardown() {
  for ns in "$ns_a" "$ns_b"; do
    [[ -e /run/netns/$ns ]] || continue
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true  # takes its veth end, and so the pair, with it
  done
}
skip() { echo "SKIP: $1: cannot emulate nodes with namespaces"; teardown; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root"
command -v ip >/dev/null || skip "no ip (iproute2)"
unshare --uts --mount true 2>/dev/null || skip "unshare --uts --mount failed"
trap teardown EXIT
ip netns add "$ns_a" 2>/dev/null || skip "ip netns add failed"
ip netns add "$ns_b" 2>/dev/null || skip "ip netns add failed"
# The veth is created with its ends already inside the nodes: no name in the host's namespace.
ip link add veth0 netns "$ns_a" type veth peer name veth0 netns "$ns_b" 2>/dev/null ||
  skip "ip link add ... type veth failed"
for pair in "$ns_a $node_a" "$ns_b $node_b"; do
  read -r ns addr <<<"$pair"
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$addr/24" dev veth0
  ip -n "$ns" link set veth0 up
done
# Reachable: a connection to a closed port of node 1 is refused (not left unanswered).
probe=$(ip netns exec "$ns_a" timeout 20 bash -c "exec 3<>/dev/tcp/$node_b/1" 2>&1 || true)
[[ $probe == *refused* ]] ||
  { echo "FAIL: the two namespaces do not reach each other over the veth"; exit 1; }
veth_bytes() { ip netns exec "$ns_a" cat /sys/class/net/veth0/statistics/tx_bytes; }
# Both directions (a pipeline sends activations one way and logits the other).
veth_both() {
  ip netns exec "$ns_a" cat /sys/class/net/veth0/statistics/tx_bytes \
    /sys/class/net/veth0/statistics/rx_bytes | awk '{s += $1} END {print s}'
}

rm -rf "$work"
mkdir -p "$work"
export FAKE_NODE_ROOT=$work/nodes
$check many 12 16 "$work/in.jsonl"

one_node() { timeout -k 30 "$run_timeout" "$root/scripts/mpirun.sh" -np 4 "$bin" "$@" </dev/null; }
two_nodes() {  # two_nodes HOSTS ARGS...: mpirun on the first node, as in an allocation
  local hosts=$1
  shift
  timeout -k 30 "$run_timeout" "$here/fake_node_ssh.sh" "$node_a" mpirun -np 4 --host "$hosts" \
    --mca plm_rsh_agent "$here/fake_node_ssh.sh" --mca btl self,vader,tcp \
    --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    -x TPINFER_ALLOW_CROSS_NODE_TP -x TPINFER_PP_MICROBATCHES "$bin" "$@" </dev/null
}
export TPINFER_ALLOW_CROSS_NODE_TP=0 TPINFER_PP_MICROBATCHES=${TPINFER_PP_MICROBATCHES:-}
# What scripts/mpirun.sh sets, for the mpirun that runs on the first node (the environment
# reaches it, and the second node's orted, through fake_node_ssh.sh).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none

# 1. dp=2 x tp=2, one group per node.
one_node --model "$model2" --tp 2 --input "$work/in.jsonl" --output "$work/ref-tp2.jsonl" \
    --batch-size 4 2>"$work/ref-tp2.err"
# (The old loopback emulation also ran this with the same host name on both nodes. With real
# network separation Open MPI 4.1's TCP BTL itself crashes when two nodes share a host name
# (SIGSEGV in mca_pml_ob1_recv_frag_callback_match during MPI_Init's allgather), so that variant
# is gone: node identity still comes from MPI's shared-memory domains, which this layout checks.)
for names in distinct; do
  two_nodes $node_a:2,$node_b:2 --model "$model2" --tp 2 --input "$work/in.jsonl" \
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

# 2. tp=4 across the nodes: refused, then allowed.
rc=0
two_nodes $node_a:2,$node_b:2 --model "$model4" --tp 4 --input "$work/in.jsonl" \
    --output "$work/tp4-refused.jsonl" 2>"$work/tp4-refused.err" || rc=$?
((rc != 0)) || { echo "FAIL: a tp group spanning nodes was accepted"; exit 1; }
grep -qE "error: \[rank 0\] 1 of 1 tensor-parallel group\(s\) of tp=4 span nodes.*TPINFER_ALLOW_CROSS_NODE_TP=1" \
    "$work/tp4-refused.err" || { echo "FAIL: no clear refusal"; cat "$work/tp4-refused.err"; exit 1; }
[[ ! -e $work/tp4-refused.jsonl ]] || { echo "FAIL: the refused job wrote output"; exit 1; }
echo "tp=4 over 2 nodes: refused (exit $rc)"
one_node --model "$model4" --tp 4 --input "$work/in.jsonl" --output "$work/ref-tp4.jsonl" \
    --batch-size 4 2>"$work/ref-tp4.err"
bytes0=$(veth_bytes)
both0=$(veth_both)
TPINFER_ALLOW_CROSS_NODE_TP=1 two_nodes $node_a:2,$node_b:2 --model "$model4" --tp 4 \
    --input "$work/in.jsonl" --output "$work/tp4-allowed.jsonl" --batch-size 4 \
    2>"$work/tp4-allowed.err"
grep -q "span nodes (allowed by TPINFER_ALLOW_CROSS_NODE_TP=1)" "$work/tp4-allowed.err"
sent=$(($(veth_bytes) - bytes0))
both_tp4=$(($(veth_both) - both0))
# The tp=4 all-reduces cross the nodes every layer of every step: far more than 100 KB.
((sent > 100000)) || { echo "FAIL: only $sent bytes left node 0 over the veth"; exit 1; }
echo "tp=4 over 2 nodes: $sent bytes sent from node 0 over the veth"
$check exactly-once "$work/in.jsonl" "$work/tp4-allowed.jsonl"
$check same "$work/ref-tp4.jsonl" "$work/tp4-allowed.jsonl"
echo "tp=4 over 2 nodes with TPINFER_ALLOW_CROSS_NODE_TP=1: runs, equal to one node"

# 3. 3 + 1 ranks, tp=2: the second group straddles the nodes.
rc=0
two_nodes $node_a:3,$node_b:1 --model "$model2" --tp 2 --input "$work/in.jsonl" \
    --output "$work/uneven.jsonl" 2>"$work/uneven.err" || rc=$?
((rc != 0)) || { echo "FAIL: a group straddling nodes was accepted"; exit 1; }
grep -qE "1 of 2 tensor-parallel group\(s\) of tp=2 span nodes" "$work/uneven.err" ||
  { echo "FAIL: no clear refusal"; cat "$work/uneven.err"; exit 1; }
echo "3 + 1 ranks with tp=2: refused (exit $rc)"

# 4. pp=2 x tp=2: a stage per node, the tp groups inside the nodes.
if [[ -n $model_pp ]]; then
  both0=$(veth_both)
  two_nodes $node_a:2,$node_b:2 --model "$model_pp" --pp 2 --tp 2 --input "$work/in.jsonl" \
      --output "$work/pp2.jsonl" --batch-size 4 --metrics-json "$work/pp2.json" \
      2>"$work/pp2.err" || { echo "FAIL: pp=2 x tp=2 over 2 nodes"; tail -n 30 "$work/pp2.err"; exit 1; }
  both_pp=$(($(veth_both) - both0))
  grep -q "layout: 4 rank(s) = dp 1 x pp 2 x tp 2" "$work/pp2.err"
  # The table: node, host, rank, dp, pp, tp, device; stage 0 on node 0, stage 1 on node 1.
  /usr/bin/python3 - "$work/pp2.err" <<'PY'
import re, sys
rows = [l.split()[2:7] for l in open(sys.argv[1]) if re.search(r"\]\s+\d+\s+\S+\s+\d+\s+0\s+[01]\s+[01]\s+CPU", l)]
nodes = {int(r[2]): (int(r[0]), int(r[4])) for r in rows}  # rank -> (node, pp)
assert nodes == {0: (0, 0), 1: (0, 0), 2: (1, 1), 3: (1, 1)}, nodes
print("layout table: stage 0 on node 0 (ranks 0, 1), stage 1 on node 1 (ranks 2, 3)")
PY
  $check exactly-once "$work/in.jsonl" "$work/pp2.jsonl"
  $check same "$work/ref-tp2.jsonl" "$work/pp2.jsonl"
  tokens=$(/usr/bin/python3 -c "import json; print(sum(json.loads(l)['completion_tokens'] for l in open('$work/pp2.jsonl')))")
  echo "pp=2 x tp=2 over 2 nodes: equal to one node; veth bytes (both ways) per generated" \
       "token: pp2 x tp2 $((both_pp / tokens)), tp4 $((both_tp4 / tokens)) ($tokens tokens)"
  ((both_pp < both_tp4)) || { echo "FAIL: the pipeline sent more between nodes than tp=4"; exit 1; }
fi

# 5. The benchmark of issue 19 (opt-in: minutes on a loaded machine).
if [[ ${PP_BENCH:-0} == 1 ]]; then
  $check many 32 16 "$work/bench.jsonl"
  bench=(--model "$root/configs/models/llama-100m" --dummy-weights --tokenizer
         "$root/configs/tokenizers/mistral" --ignore-eos --batch-size 32 --input "$work/bench.jsonl")
  for layout in "tp4:--tp 4" "pp2tp2:--pp 2 --tp 2" "pp2tp2-one-step:--pp 2 --tp 2"; do
    name=${layout%%:*}
    depth=
    [[ $name == *one-step ]] && depth=1
    both0=$(veth_both)
    # shellcheck disable=SC2086
    TPINFER_PP_MICROBATCHES=$depth TPINFER_ALLOW_CROSS_NODE_TP=1 two_nodes $node_a:2,$node_b:2 "${bench[@]}" ${layout#*:} \
        --output "$work/bench-$name.jsonl" 2>"$work/bench-$name.err" ||
      { echo "FAIL: benchmark $name"; tail -n 20 "$work/bench-$name.err"; exit 1; }
    bytes=$(($(veth_both) - both0))
    /usr/bin/python3 - "$work/bench-$name.err" "$bytes" "$name" <<'PY'
import re, sys
line = [l for l in open(sys.argv[1]) if "result(s) written" in l][-1]
tps = float(re.search(r"([0-9.]+) generated tok/s", line).group(1))
tokens = int(re.search(r"\+ (\d+) generated tokens", line).group(1))
print(f"bench {sys.argv[3]}: {tps:.1f} generated tok/s, {int(sys.argv[2]) / tokens:.0f} bytes "
      f"between the nodes per generated token ({tokens} tokens, {int(sys.argv[2])} bytes)")
PY
  done
fi
echo "PASS"

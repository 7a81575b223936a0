#!/bin/bash
# An `ssh` stand-in that makes one machine look like several nodes to Open MPI, for the multi-node
# test (check_multinode.sh): mpirun --mca plm_rsh_agent fake_node_ssh.sh --host 10.77.0.1:2,... .
# HOST is a node's address; the command runs in that node's network namespace (made by the test:
# $FAKE_NODE_NETNS_PREFIX + the address with '.' as '-', holding a loopback and the veth end with
# that address), in its own UTS namespace (host name node-ADDRESS, or FAKE_NODE_HOSTNAME for all
# nodes, to show that nothing keys on names) and its own mount namespace with a private /dev/shm
# and TMPDIR ($FAKE_NODE_ROOT/ADDRESS), as on separate machines: shared memory never crosses
# nodes, and ranks on different nodes talk TCP over the veth pair. The test also starts mpirun
# itself through it, on the first node, as a job step starts on the first node of an allocation.
# Needs root. Usage (as ssh): fake_node_ssh.sh [ssh options] HOST COMMAND...
set -euo pipefail
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
host=$1
shift
netns=${FAKE_NODE_NETNS_PREFIX:?set by check_multinode.sh}${host//./-}
[[ -e /run/netns/$netns ]] || { echo "fake_node_ssh: no network namespace $netns for host $host" >&2; exit 255; }
node_tmp=${FAKE_NODE_ROOT:-/tmp/fake-nodes}/$host
mkdir -p "$node_tmp"
name=${FAKE_NODE_HOSTNAME:-node-${host//./-}}
# Like ssh, the remote command arrives as words of one shell command line.
# shellcheck disable=SC2145
exec ip netns exec "$netns" unshare --uts --mount --propagation private /bin/sh -c \
  "hostname '$name' && mount -t tmpfs -o size=2g tmpfs /dev/shm && export TMPDIR='$node_tmp' && exec $*"

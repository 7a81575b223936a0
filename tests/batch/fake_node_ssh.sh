#!/bin/bash
# An `ssh` stand-in that makes one machine look like several nodes to Open MPI, for the multi-node
# tests: mpirun --mca plm_rsh_agent fake_node_ssh.sh --host 127.0.0.2:2,127.0.0.3:2 ...
# Open MPI "logs in" to each host with it to start that node's orted; the orted (and the ranks
# it forks) then live in their own UTS namespace (own host name: the host's name, or
# FAKE_NODE_HOSTNAME for all of them, to show that nothing keys on names) and their own mount
# namespace with a private /dev/shm and TMPDIR, as on separate machines, so shared memory never
# crosses "nodes" and ranks on different nodes talk over TCP (loopback). Needs root.
# Usage (by Open MPI): fake_node_ssh.sh [ssh options] HOST COMMAND...
set -euo pipefail
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
host=$1
shift
node_tmp=${FAKE_NODE_ROOT:-/tmp/fake-nodes}/$host
mkdir -p "$node_tmp"
name=${FAKE_NODE_HOSTNAME:-$host}
# shellcheck disable=SC2145  # the remote command arrives as words of one shell command line
exec unshare --uts --mount --propagation private /bin/sh -c \
  "hostname '$name' && mount -t tmpfs -o size=2g tmpfs /dev/shm && export TMPDIR='$node_tmp' && exec $*"

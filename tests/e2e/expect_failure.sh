#!/usr/bin/env bash
# Runs a tpinfer job that must be refused and checks how: a non-zero exit, within a time bound
# (no rank left hanging), and the expected message (an extended regex) on stderr once per rank.
# Usage: expect_failure.sh NP REGEX -- COMMAND...   (COMMAND runs under scripts/mpirun.sh -np NP)
set -uo pipefail
np=$1 regex=$2
shift 3
root=$(cd "$(dirname "$0")/../.." && pwd)
err=$(mktemp)
trap 'rm -f "$err"' EXIT
timeout 120 "$root/scripts/mpirun.sh" -np "$np" "$@" >/dev/null 2>"$err"
rc=$?
echo "exit code: $rc"
sed 's/^/  stderr: /' "$err" | head -20
if [[ $rc -eq 0 ]]; then echo "FAIL: the job succeeded but should have been refused"; exit 1; fi
if [[ $rc -eq 124 ]]; then echo "FAIL: the job hung (killed after 120 s)"; exit 1; fi
n=$(grep -cE "tpinfer: error: \[rank [0-9]+\] .*($regex)" "$err")
if [[ $n -ne $np ]]; then
  echo "FAIL: expected the message /$regex/ from each of the $np ranks, found it $n time(s)"
  exit 1
fi
lines=$(grep -c "tpinfer: error:" "$err")
long=$(grep "tpinfer: error:" "$err" | awk 'length > 600' | wc -l)
if [[ $long -ne 0 ]]; then echo "FAIL: an error message is longer than 600 characters"; exit 1; fi
echo "PASS: refused with the expected message on all $np ranks ($lines error lines)"

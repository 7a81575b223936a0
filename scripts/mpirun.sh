#!/usr/bin/env bash
# mpirun with the settings these machines need: allowed as root (containers, CI) and allowed to
# place more ranks than cores (4 ranks on a 2-core machine). Usage: scripts/mpirun.sh -np 4 CMD...
#
# Thread layout (CPU backend): each rank runs T = OMP_NUM_THREADS (default cores / ranks, what
# tpinfer picks for threads: 0) OpenMP threads. Open MPI's default binds a rank to ONE core
# (np <= 2), which would squeeze a multi-threaded rank onto that core. So, unless the command line
# already says --bind-to / --map-by / --host / --hostfile:
#   ranks x T <= cores: --map-by slot:PE=T --bind-to core (each rank owns T cores) and its
#                       threads pinned one per core (OMP_PROC_BIND=close, OMP_PLACES=cores);
#   oversubscribed:     --bind-to none, threads not pinned (the OS balances them).
# The chosen layout is printed to stderr (set TPINFER_LAUNCH_QUIET=1 to silence it).
#
# Stopping: mpirun itself answers SIGTERM by killing the ranks (SIGTERM, then SIGKILL a second
# later), which drops running requests. This script instead turns a SIGTERM (or SIGINT) it
# receives into a SIGUSR1 to mpirun, which forwards it to every rank on every node: tpinfer
# stops as on scancel (the server drains for shutdown_grace_s) and mpirun exits with the job's
# status. A second SIGTERM kills as plain mpirun would.
# Recommendation per node: 1 rank x all cores for decode and prefill on one socket (tp=1), one
# rank per socket / NUMA node x its cores for tp > 1 (docs in README.md, "CPU thread layout").
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Keep Open MPI quiet about missing high-speed fabrics on a laptop or CI box.
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}

np=1
user_layout=0
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  case ${args[i]} in
    -np | -n | --np) np=${args[i + 1]:-1} ;;
    --bind-to | --map-by | --host | -H | --hostfile | --machinefile | --rankfile) user_layout=1 ;;
    --bind-to=* | --map-by=* | --host=* | --hostfile=*) user_layout=1 ;;
    -*) ;;
    *) break ;;  # the program and its arguments
  esac
done
[[ $np =~ ^[0-9]+$ && $np -ge 1 ]] || np=1
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone honours OMP_NUM_THREADS
threads=${OMP_NUM_THREADS:-$((cores / np > 0 ? cores / np : 1))}
[[ $threads =~ ^[0-9]+$ && $threads -ge 1 ]] || threads=1
layout=()
if ((user_layout)); then
  binding="as given on the command line"
elif ((np * threads <= cores)); then
  layout=(--map-by "slot:PE=$threads" --bind-to core)
  export OMP_PROC_BIND=${OMP_PROC_BIND:-close} OMP_PLACES=${OMP_PLACES:-cores}
  binding="each rank bound to $threads core(s), threads pinned (OMP_PROC_BIND=$OMP_PROC_BIND)"
else
  layout=(--bind-to none)
  binding="oversubscribed ($np x $threads > $cores cores): not bound"
fi
export OMP_NUM_THREADS=$threads
[[ ${TPINFER_LAUNCH_QUIET:-0} == 1 ]] ||
  echo "mpirun.sh: $np rank(s) x $threads thread(s) on $cores core(s); $binding" >&2
mpirun "${layout[@]}" "$@" <&0 &
pid=$!
forwarded=0
on_stop() {
  if ((forwarded)); then
    kill -TERM "$pid" 2>/dev/null
  else
    forwarded=1
    [[ ${TPINFER_LAUNCH_QUIET:-0} == 1 ]] ||
      echo "mpirun.sh: stop requested: SIGUSR1 to every rank (they finish running requests)" >&2
    kill -USR1 "$pid" 2>/dev/null
  fi
}
trap on_stop TERM INT
rc=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"
  rc=$?
done
exit "$rc"

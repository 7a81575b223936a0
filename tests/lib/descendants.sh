# Sourced by the test scripts that signal ranks: descendants PID prints every process below PID.
# scripts/mpirun.sh runs mpirun as its child (it forwards SIGTERM as SIGUSR1), and the ranks are
# mpirun's children, so a rank is a grandchild of the mpirun.sh a test started.
descendants() {
  local c
  for c in $(pgrep -P "$1"); do
    echo "$c"
    descendants "$c"
  done
}

// SIGTERM (SLURM preemption, scancel, a time limit), SIGINT and SIGUSR1 (what mpirun forwards;
// scripts/mpirun.sh sends it on SIGTERM) for a job's duration: the first
// one asks for an orderly stop that the job's loops poll with stop_signalled(); SA_RESETHAND
// makes a second one kill as usual.
#pragma once

#include <csignal>

namespace tpinfer {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_term_ = {}, old_int_ = {}, old_usr1_ = {};
};

bool stop_signalled();
int stop_signal_number();        // the signal that arrived (SIGTERM, SIGINT), 0 if none
const char* stop_signal_name();  // "SIGTERM", "SIGINT" or "a signal on another rank"

}  // namespace tpinfer

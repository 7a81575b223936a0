#include "runtime/job.h"

#include "config/path_checks.h"
#include "core/log.h"
#include "core/stop_signals.h"
#include "core/watchdog.h"
#include "runtime/frontend/batch_file.h"
#include "runtime/frontend/cli_prompt.h"
#include "runtime/frontend/server_job.h"

namespace tpinfer {
namespace {

constexpr int kWatchdogExit = 3;  // the job's exit status when the watchdog ends it

}  // namespace

void run_job(World& world, const RunConfig& cfg, std::chrono::steady_clock::time_point launch) {
  set_log_level(cfg.log_level);
  // A rank that stops making progress (a peer stopped or unreachable) ends the whole job.
  Watchdog watchdog(cfg.step_timeout_s, world.rank(), [&world] { world.abort(kWatchdogExit); });

  // Rank 0 reads the prompt file and the batch input and writes the output and the metrics:
  // it checks them before anything is loaded, and every rank reports what it found.
  std::string err;
  if (world.rank() == 0) {
    try {
      check_file_keys(cfg);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  world.agree(err.empty(), err);
  // SIGTERM (SLURM preemption) and SIGINT ask every mode for an orderly stop.
  StopSignals signals;
  if (!cfg.serve.empty()) {
    run_server_job(world, cfg, launch);
    return;
  }
  if (!cfg.input.empty() || !cfg.output.empty()) {
    run_batch_job(world, cfg, launch);
    return;
  }
  run_single_prompt(world, cfg, launch);
}

}  // namespace tpinfer

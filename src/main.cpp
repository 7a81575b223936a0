// tpinfer: MPI init, configuration, the job; any escaped error becomes one clear line on stderr
// and a non-zero exit. Errors before the first collective are seen by every rank alike; an
// error after it (a rank failing mid-generation) aborts the whole job so no rank hangs.
#include <chrono>
#include <cstdio>
#include <exception>

#include "comm/world.h"
#include "config/run_config.h"
#include "core/error.h"
#include "core/log.h"
#include "runtime/job.h"

int main(int argc, char** argv) {
  const auto launch = std::chrono::steady_clock::now();
  tpinfer::World world(&argc, &argv);
  tpinfer::set_log_rank(world.rank());
  try {
    const std::optional<tpinfer::RunConfig> cfg = tpinfer::parse_run_config(argc, argv);
    if (!cfg) return 0;  // --help / --version
    tpinfer::run_job(world, *cfg, launch);
  } catch (const tpinfer::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tpinfer: error: [rank %d] %s\n", world.rank(), e.what());
    std::fflush(stderr);
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tpinfer: internal error: [rank %d] %s\n", world.rank(), e.what());
    std::fflush(stderr);
    world.abort(2);
  }
  return 0;
}

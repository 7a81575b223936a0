#include "runtime/batch.h"

#include "core/error.h"

namespace tpinfer {

void run_batch_job(World& world, const RunConfig& cfg, std::chrono::steady_clock::time_point) {
  (void)world;
  TPI_CHECK(!cfg.input.empty() && !cfg.output.empty(),
            "batch inference needs both input and output (JSON Lines files)");
  TPI_FAIL("batch inference is not implemented yet");
}

}  // namespace tpinfer

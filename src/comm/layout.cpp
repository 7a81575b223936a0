#include "comm/layout.h"

#include "core/error.h"

namespace tpinfer {

ParallelLayout ParallelLayout::make(int world_size, int rank, int tp, int pp) {
  TPI_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
            "layout: rank " << rank << " outside a world of " << world_size);
  TPI_CHECK(pp >= 1, "pp=" << pp << ": the pipeline-parallel size must be >= 1");
  if (tp <= 0) {
    TPI_CHECK(world_size % pp == 0, "pp=" << pp << " does not divide the " << world_size
                                          << " MPI ranks (world = dp x pp x tp); launch a "
                                          << "multiple of " << pp << " ranks");
    tp = world_size / pp;
  }
  if (world_size % (tp * pp) != 0) {
    std::string valid;
    for (int t = 1; t <= world_size; ++t) {
      if (world_size % (t * pp) == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(t);
    }
    if (pp == 1) {
      TPI_FAIL("tp=" << tp << " does not divide the " << world_size
                     << " MPI ranks (world = dp x tp); valid tp: " << valid);
    }
    TPI_FAIL("tp=" << tp << " x pp=" << pp << " = " << tp * pp << " does not divide the "
                   << world_size << " MPI ranks (world = dp x pp x tp); "
                   << (valid.empty() ? "pp=" + std::to_string(pp) + " needs a multiple of " +
                                           std::to_string(pp) + " ranks"
                                     : "valid tp with pp=" + std::to_string(pp) + ": " + valid));
  }
  ParallelLayout l;
  l.world_size = world_size;
  l.rank = rank;
  l.tp = tp;
  l.pp = pp;
  l.dp = world_size / (tp * pp);
  l.tp_rank = rank % tp;
  l.pp_rank = (rank / tp) % pp;
  l.dp_rank = rank / (tp * pp);
  return l;
}

std::string ParallelLayout::describe_stage(int stage) const {
  return "stage " + std::to_string(stage) + " of " + std::to_string(pp) + " (rank " +
         std::to_string(rank_of(dp_rank, stage, tp_rank)) + ")";
}

}  // namespace tpinfer

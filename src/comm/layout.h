// The parallel layout of the job: world = dp x pp x tp, tp innermost (the ranks of a
// tensor-parallel group are consecutive, so they share a node), then the pipeline stages, then
// the data-parallel replicas. One immutable value, computed once from (world size, rank, tp, pp)
// by ParallelLayout::make and passed around: which replica and stage a rank is, its tp group,
// its pipeline neighbours and its replica's leader. No MPI here (tests/unit checks it alone).
//
//   rank = (dp_rank * pp + pp_rank) * tp + tp_rank
//   e.g. 8 ranks, dp 1 x pp 2 x tp 4: ranks 0-3 are stage 0 (node 0), ranks 4-7 stage 1 (node 1)
#pragma once

#include <string>

namespace tpinfer {

struct ParallelLayout {
  int world_size = 1;
  int rank = 0;
  int tp = 1, pp = 1, dp = 1;
  int tp_rank = 0, pp_rank = 0, dp_rank = 0;

  // Throws one clear line when tp x pp does not divide the world (or either is < 1); the
  // message lists the tp (and pp) that do. tp <= 0 means world_size / pp.
  static ParallelLayout make(int world_size, int rank, int tp, int pp);

  int rank_of(int dp_r, int pp_r, int tp_r) const { return (dp_r * pp + pp_r) * tp + tp_r; }
  // The pp x tp ranks of one replica, which run one model together.
  int replica_size() const { return pp * tp; }
  int replica_rank() const { return pp_rank * tp + tp_rank; }  // 0 = the replica leader
  int replica_leader() const { return rank_of(dp_rank, 0, 0); }
  bool is_replica_leader() const { return replica_rank() == 0; }
  bool first_stage() const { return pp_rank == 0; }
  bool last_stage() const { return pp_rank == pp - 1; }
  // The same tp rank of the neighbouring stages (activations go rank to rank); -1 at the ends.
  int prev_stage_rank() const {
    return first_stage() ? -1 : rank_of(dp_rank, pp_rank - 1, tp_rank);
  }
  int next_stage_rank() const { return last_stage() ? -1 : rank_of(dp_rank, pp_rank + 1, tp_rank); }
  // "stage 1 of 2 (rank 5)": how errors and the watchdog name a stage.
  std::string describe_stage(int stage) const;
};

}  // namespace tpinfer

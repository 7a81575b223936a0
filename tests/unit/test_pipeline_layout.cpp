// The parallel layout (comm/layout.h) and the pipeline split (model/pipeline_stages.h) without
// MPI: every rank's coordinates, neighbours and leader for dp x pp x tp, the refusals, the
// balanced and explicit splits, and which tensors each stage holds.
#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "comm/layout.h"
#include "core/error.h"
#include "model/pipeline_stages.h"

using namespace tpinfer;

TEST_CASE("layout: dp x pp x tp with tp innermost, then pp, then dp", "[layout]") {
  // 16 ranks = dp 2 x pp 2 x tp 4.
  std::set<int> seen;
  for (int r = 0; r < 16; ++r) {
    const ParallelLayout l = ParallelLayout::make(16, r, 4, 2);
    CHECK(l.dp == 2);
    CHECK(l.tp_rank == r % 4);
    CHECK(l.pp_rank == (r / 4) % 2);
    CHECK(l.dp_rank == r / 8);
    CHECK(l.rank_of(l.dp_rank, l.pp_rank, l.tp_rank) == r);
    CHECK(l.replica_leader() == 8 * l.dp_rank);
    CHECK(l.is_replica_leader() == (r % 8 == 0));
    seen.insert(l.rank_of(l.dp_rank, l.pp_rank, l.tp_rank));
  }
  CHECK(seen.size() == 16);
  const ParallelLayout s0 = ParallelLayout::make(16, 9, 4, 2);  // dp 1, stage 0, tp 1
  CHECK(s0.first_stage());
  CHECK(s0.prev_stage_rank() == -1);
  CHECK(s0.next_stage_rank() == 13);
  const ParallelLayout s1 = ParallelLayout::make(16, 13, 4, 2);
  CHECK(s1.last_stage());
  CHECK(s1.prev_stage_rank() == 9);
  CHECK(s1.next_stage_rank() == -1);
  CHECK(s1.describe_stage(0) == "stage 0 of 2 (rank 9)");
  // tp 0 = world / pp.
  CHECK(ParallelLayout::make(8, 5, 0, 2).tp == 4);
  CHECK(ParallelLayout::make(8, 5, 0, 1).tp == 8);
}

TEST_CASE("layout: refusals name what divides", "[layout]") {
  CHECK_THROWS_WITH(ParallelLayout::make(4, 0, 2, 3),
                    "tp=2 x pp=3 = 6 does not divide the 4 MPI ranks (world = dp x pp x tp); "
                    "pp=3 needs a multiple of 3 ranks");
  CHECK_THROWS_WITH(ParallelLayout::make(8, 0, 3, 2),
                    "tp=3 x pp=2 = 6 does not divide the 8 MPI ranks (world = dp x pp x tp); "
                    "valid tp with pp=2: 1, 2, 4");
  CHECK_THROWS_WITH(ParallelLayout::make(4, 0, 3, 1),
                    "tp=3 does not divide the 4 MPI ranks (world = dp x tp); valid tp: 1, 2, 4");
  CHECK_THROWS_WITH(ParallelLayout::make(4, 0, 0, 3),
                    Catch::Contains("pp=3 does not divide the 4 MPI ranks"));
  CHECK_THROWS_WITH(ParallelLayout::make(4, 0, 1, 0), Catch::Contains("must be >= 1"));
}

TEST_CASE("pipeline split: balanced by layer count, explicit lists checked", "[layout]") {
  CHECK(StageSplit::balanced(36, 4).layers == std::vector<int>{9, 9, 9, 9});
  CHECK(StageSplit::balanced(5, 4).layers == std::vector<int>{2, 1, 1, 1});
  CHECK(StageSplit::balanced(30, 4).layers == std::vector<int>{8, 8, 7, 7});
  CHECK(StageSplit::balanced(30, 4).first_layer(2) == 16);
  CHECK(StageSplit::balanced(30, 4).describe() == "8,8,7,7");
  CHECK_THROWS_WITH(StageSplit::balanced(2, 4),
                    Catch::Contains("pp=4 is more pipeline stages than the model's 2 layers"));
  CHECK(StageSplit::from_list({10, 10, 8, 8}, 36, "x").pp() == 4);
  CHECK_THROWS_WITH(StageSplit::from_list({10, 10, 8}, 36, "m.json"),
                    "m.json: the split 10,10,8 covers 28 layers, the model has 36");
  CHECK_THROWS_WITH(StageSplit::from_list({36, 0}, 36, "m.json"),
                    "m.json: every stage needs at least one layer, found 0");
}

TEST_CASE("pipeline split: what each stage holds", "[layout]") {
  const StageSplit split = StageSplit::balanced(5, 2);  // 3, 2
  const StageRange first = StageRange::of(split, 0, false);
  const StageRange last = StageRange::of(split, 1, false);
  CHECK(first.holds("model.embed_tokens.weight"));
  CHECK_FALSE(last.holds("model.embed_tokens.weight"));
  CHECK(last.holds("lm_head.weight"));
  CHECK(last.holds("model.norm.weight"));
  CHECK_FALSE(first.holds("lm_head.weight"));
  CHECK(first.holds("model.layers.2.mlp.down_proj.weight"));
  CHECK_FALSE(first.holds("model.layers.3.mlp.down_proj.weight"));
  CHECK(last.holds("model.layers.3.self_attn.q_proj.weight"));
  CHECK(last.holds("model.layers.4.mlp.experts.7.up_proj.weight"));
  CHECK_FALSE(last.holds("model.layers.2.input_layernorm.weight"));
  // Tied embeddings: the last stage needs the embedding as its lm_head.
  CHECK(StageRange::of(split, 1, true).holds("model.embed_tokens.weight"));
  // One stage holds everything.
  const StageRange all = StageRange::of(StageSplit::balanced(5, 1), 0, true);
  CHECK(all.holds("model.embed_tokens.weight"));
  CHECK(all.holds("lm_head.weight"));
  CHECK(all.holds("model.layers.4.mlp.down_proj.weight"));
}

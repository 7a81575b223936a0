// The KV pool's size (choose_kv_blocks): kv_cache_blocks as given; on a GPU every block the
// budget leaves; on the CPU batch_size sequences of max_seq within the budget; never below one
// sequence; the memory plan reports what it holds.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "runtime/engine/memory_plan.h"

using namespace tpinfer;

namespace {

// A plan whose fixed part (weights, scratch, workspace) is `fixed` bytes, with a 0-byte pool.
MemoryPlan probe(size_t fixed, size_t budget) {
  MemoryPlan p;
  p.weight_bytes = fixed;
  p.total_bytes = fixed;
  p.budget_bytes = budget;
  return p;
}

}  // namespace

TEST_CASE("the KV pool's size: asked, filling the device, or the CPU's reservation",
          "[memory][kv]") {
  EngineShape shape;
  shape.max_seq = 1024;  // 64 blocks of 16 a sequence
  shape.n_slots = 8;
  const size_t block = 1000;
  // Asked: as given, whatever the budget says (the memory check judges it).
  CHECK(choose_kv_blocks(probe(0, 1), shape, block, 7, true) == 7);
  CHECK_THROWS_WITH(choose_kv_blocks(probe(0, 1), shape, block, int64_t{1} << 31, false),
                    "kv_cache_blocks must be at most 1073741824, found 2147483648");
  // GPU: every block the budget leaves after the fixed part.
  CHECK(choose_kv_blocks(probe(500000, 1500000), shape, block, 0, true) == 1000);
  // CPU: 8 sequences of 64 blocks when the budget has room, fewer when it does not.
  CHECK(choose_kv_blocks(probe(500000, 1500000), shape, block, 0, false) == 512);
  CHECK(choose_kv_blocks(probe(500000, 700000), shape, block, 0, false) == 200);
  // Never fewer than one sequence of max_seq (the memory check then says it does not fit).
  CHECK(choose_kv_blocks(probe(500000, 510000), shape, block, 0, false) == 64);
  CHECK(choose_kv_blocks(probe(500000, 400000), shape, block, 0, true) == 64);

  MemoryPlan p;
  p.kv_blocks = 200;
  p.kv_block_size = 16;
  p.kv_max_seq = 1024;
  CHECK(p.kv_sequences() == 3);
  CHECK_THAT(p.report(), Catch::Contains("(200 blocks of 16 = 3200 tokens: 3 sequence(s) of "
                                         "max_seq 1024)"));
}

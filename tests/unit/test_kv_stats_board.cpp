// The board where rank 0 keeps the replicas' KV cache counters (runtime/scheduler/dispatcher.h):
// the latest report of each replica, summed.
#include <catch2/catch.hpp>

#include "runtime/scheduler/dispatcher.h"

using namespace tpinfer;

TEST_CASE("the KV stats board sums the replicas", "[scheduler]") {
  KvStatsBoard board;
  CHECK(board.replicas() == 0);
  KvCacheStats a, b;
  a.blocks_total = 100;
  a.blocks_used = 10;
  a.prefix_hit_tokens = 5;
  b.blocks_total = 100;
  b.blocks_used = 20;
  b.preemptions = 1;
  board.set(0, a);
  board.set(2, b);
  board.set(2, b);  // the latest report replaces the last
  CHECK(board.replicas() == 2);
  const KvCacheStats t = board.total();
  CHECK(t.blocks_total == 200);
  CHECK(t.blocks_used == 30);
  CHECK(t.prefix_hit_tokens == 5);
  CHECK(t.preemptions == 1);
}

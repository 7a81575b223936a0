// The KV block pool and the prefix index: refcounts (a block shared by n holders is freed once),
// the LRU eviction order of unreferenced cached blocks, the hash chain (a block matches only
// after its own prefix), and that a reused or colliding block never matches.
#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "runtime/scheduler/block_pool.h"
#include "runtime/scheduler/prefix_cache.h"

using namespace tpinfer;

namespace {

std::vector<int32_t> iota_ids(int n, int32_t from) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

}  // namespace

TEST_CASE("block pool: allocate until empty, release, refcounts", "[block_pool]") {
  BlockPool pool(4);
  CHECK(pool.n_free() == 4);
  std::vector<int> got;
  for (int i = 0; i < 4; ++i) got.push_back(pool.allocate());
  CHECK(pool.allocate() == -1);
  CHECK(pool.n_used() == 4);
  std::vector<int> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<int>{0, 1, 2, 3});
  for (int b : got) CHECK(pool.refcount(b) == 1);
  pool.release(got[2]);
  CHECK(pool.n_free() == 1);
  CHECK(pool.allocate() == got[2]);
  CHECK_THROWS_AS(pool.release(7), Error);
  CHECK_THROWS_AS(BlockPool(0), Error);
}

TEST_CASE("block pool: a block shared by n holders is freed once", "[block_pool]") {
  BlockPool pool(2);
  const int b = pool.allocate();
  for (int i = 0; i < 2; ++i) pool.retain(b);  // three holders (n = 3 choices)
  CHECK(pool.refcount(b) == 3);
  pool.release(b);
  pool.release(b);
  CHECK(pool.n_free() == 1);  // still held by the last one
  pool.release(b);
  CHECK(pool.n_free() == 2);
  CHECK_THROWS_WITH(pool.release(b), Catch::Contains("release of free block"));
  CHECK_THROWS_WITH(pool.retain(b), Catch::Contains("retain of free block"));
}

TEST_CASE("block pool: never-cached blocks go first, then cached ones least recently released",
          "[block_pool]") {
  BlockPool pool(4);
  std::vector<int> evicted;
  pool.on_evict = [&](int b) { evicted.push_back(b); };
  const int a = pool.allocate(), b = pool.allocate(), c = pool.allocate(), d = pool.allocate();
  pool.mark_cached(a, true);
  pool.mark_cached(b, true);
  pool.mark_cached(c, true);
  pool.release(b);  // released order: b, c, a (LRU: b oldest)
  pool.release(c);
  pool.release(a);
  pool.release(d);  // not cached: the free list
  CHECK(pool.n_free() == 4);
  CHECK(pool.n_cached_free() == 3);
  CHECK(pool.allocate() == d);
  CHECK(evicted.empty());
  pool.retain(c);  // a cache hit revives c: off the LRU list
  CHECK(pool.n_cached_free() == 2);
  CHECK(pool.allocate() == b);
  CHECK(pool.allocate() == a);
  CHECK(evicted == std::vector<int>{b, a});
  CHECK(pool.allocate() == -1);
  CHECK_FALSE(pool.cached(b));
  CHECK(pool.cached(c));
}

TEST_CASE("prefix cache: a hash chain over full blocks", "[prefix_cache]") {
  BlockPool pool(8);
  PrefixCache cache(pool, 4);
  const std::vector<int32_t> prompt = iota_ids(10, 100);  // two full blocks and 2 ids
  // Compute the prompt: blocks 0 and 1 registered as they fill.
  const int b0 = pool.allocate(), b1 = pool.allocate(), b2 = pool.allocate();
  PrefixCache::Link l0 = cache.insert(PrefixCache::Link{}, prompt.data(), b0);
  PrefixCache::Link l1 = cache.insert(l0, prompt.data() + 4, b1);
  CHECK(l0.block == b0);
  CHECK(l1.block == b1);
  CHECK(cache.n_entries() == 2);

  SECTION("the same prompt matches both blocks, each retained") {
    PrefixCache::Link last;
    const std::vector<int> m = cache.match(prompt.data(), 10, 100, &last);
    CHECK(m == std::vector<int>{b0, b1});
    CHECK(last.block == b1);
    CHECK(pool.refcount(b0) == 2);
    CHECK(pool.refcount(b1) == 2);
  }
  SECTION("max_blocks limits the match (the last prompt token is always computed)") {
    CHECK(cache.match(prompt.data(), 10, 1) == std::vector<int>{b0});
    CHECK(cache.match(prompt.data(), 7, 100) == std::vector<int>{b0});  // block 1 not full
  }
  SECTION("the second block alone does not match: its key chains the first") {
    std::vector<int32_t> other = prompt;
    other[0] = 1;  // a different first block, same second block
    CHECK(cache.match(other.data(), 10, 100).empty());
    CHECK_FALSE(cache.find(PrefixCache::Link{}, prompt.data() + 4).valid());
  }
  SECTION("a different second block stops the match after the first") {
    std::vector<int32_t> other = prompt;
    other[6] = 1;
    CHECK(cache.match(other.data(), 10, 100) == std::vector<int>{b0});
  }
  SECTION("an equal entry is not registered twice") {
    const int dup = pool.allocate();
    const PrefixCache::Link l = cache.insert(PrefixCache::Link{}, prompt.data(), dup);
    CHECK(l.block == b0);
    CHECK_FALSE(pool.cached(dup));
    CHECK(cache.n_entries() == 2);
  }
  SECTION("released cached blocks stay findable until evicted, then the chain breaks") {
    pool.release(b1);
    pool.release(b0);
    pool.release(b2);
    CHECK(pool.n_used() == 0);
    CHECK(pool.n_cached_free() == 2);
    CHECK(cache.match(prompt.data(), 10, 100) == std::vector<int>{b0, b1});
    pool.release(b1);  // as a sequence releases: its last block first
    pool.release(b0);
    // Six never-cached blocks go first; the seventh allocation evicts b1 (released first).
    for (int i = 0; i < 6; ++i) CHECK_FALSE(pool.cached(pool.allocate()));
    CHECK(pool.allocate() == b1);
    CHECK(cache.n_entries() == 1);
    CHECK(cache.match(prompt.data(), 10, 100) == std::vector<int>{b0});
  }
}

TEST_CASE("prefix cache: a reused parent block never matches its old children", "[prefix_cache]") {
  BlockPool pool(3);
  PrefixCache cache(pool, 2);
  const std::vector<int32_t> p = {1, 2, 3, 4}, q = {9, 9, 3, 4};
  int a = pool.allocate(), b = pool.allocate();
  const PrefixCache::Link la = cache.insert(PrefixCache::Link{}, p.data(), a);
  cache.insert(la, p.data() + 2, b);
  pool.release(a);  // a evicted first
  pool.release(b);
  const int c = pool.allocate();  // the never-cached block
  CHECK_FALSE(pool.cached(c));
  const int a2 = pool.allocate();  // evicts a and reuses it for q's first block
  CHECK(a2 == a);
  const PrefixCache::Link lq = cache.insert(PrefixCache::Link{}, q.data(), a2);
  CHECK(lq.block == a);
  // b still claims to follow block a, but a's registration is new: q's second block [3, 4]
  // must not match b (its KV was computed after [1, 2]).
  CHECK_FALSE(cache.find(lq, q.data() + 2).valid());
  CHECK(cache.match(q.data(), 4, 10) == std::vector<int>{a});
}

TEST_CASE("prefix cache: a hash collision is caught by comparing the ids", "[prefix_cache]") {
  // Not a real collision (64-bit keys), but find() must compare ids even when the key agrees:
  // a block whose ids differ in one position is a different block.
  BlockPool pool(2);
  PrefixCache cache(pool, 3);
  const std::vector<int32_t> x = {5, 6, 7}, y = {5, 6, 8};
  const int a = pool.allocate();
  cache.insert(PrefixCache::Link{}, x.data(), a);
  CHECK(cache.find(PrefixCache::Link{}, x.data()).block == a);
  CHECK_FALSE(cache.find(PrefixCache::Link{}, y.data()).valid());
}

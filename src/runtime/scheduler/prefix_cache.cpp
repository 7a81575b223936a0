// The hash-chained prefix index over pool blocks (see prefix_cache.h).
#include "runtime/scheduler/prefix_cache.h"

#include <algorithm>

#include "core/error.h"

namespace tpinfer {
namespace {

uint64_t mix(uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

PrefixCache::PrefixCache(BlockPool& pool, int block_size)
    : pool_(pool), block_size_(block_size), entries_(static_cast<size_t>(pool.n_blocks())) {
  TPI_CHECK(block_size > 0, "prefix cache: block_size must be > 0, got " << block_size);
  pool_.on_evict = [this](int block) { forget(block); };
}

uint64_t PrefixCache::chain_key(uint64_t parent_key, const int32_t* ids) const {
  uint64_t h = mix(parent_key ^ 0x9e3779b97f4a7c15ull);
  for (int i = 0; i < block_size_; ++i) {
    h = mix(h + 0x9e3779b97f4a7c15ull + static_cast<uint32_t>(ids[i]));
  }
  return h;
}

PrefixCache::Link PrefixCache::find(const Link& parent, const int32_t* ids) const {
  const uint64_t key = chain_key(parent.key, ids);
  auto [lo, hi] = by_key_.equal_range(key);
  for (auto it = lo; it != hi; ++it) {
    const Entry& e = entries_[static_cast<size_t>(it->second)];
    if (e.parent_block == parent.block && e.parent_gen == parent.gen &&
        std::equal(e.ids.begin(), e.ids.end(), ids)) {
      return Link{it->second, e.gen, key};
    }
  }
  return Link{};
}

std::vector<int> PrefixCache::match(const int32_t* ids, int n, int max_blocks, Link* last) {
  std::vector<int> blocks;
  Link at;
  for (int b = 0; b < max_blocks && (b + 1) * block_size_ <= n; ++b) {
    const Link next = find(at, ids + static_cast<size_t>(b) * block_size_);
    if (!next.valid()) break;
    pool_.retain(next.block);
    blocks.push_back(next.block);
    at = next;
  }
  if (last) *last = at;
  return blocks;
}

PrefixCache::Link PrefixCache::insert(const Link& parent, const int32_t* ids, int block) {
  const Link existing = find(parent, ids);
  if (existing.valid()) return existing;
  TPI_CHECK(block >= 0 && block < pool_.n_blocks() && pool_.refcount(block) > 0,
            "prefix cache: insert of block " << block << " that the caller does not hold");
  Entry& e = entries_[static_cast<size_t>(block)];
  if (e.live) forget(block);  // the block is re-registered under a new prefix
  e.live = true;
  ++e.gen;
  e.key = chain_key(parent.key, ids);
  e.parent_block = parent.block;
  e.parent_gen = parent.gen;
  e.ids.assign(ids, ids + block_size_);
  by_key_.emplace(e.key, block);
  pool_.mark_cached(block, true);
  return Link{block, e.gen, e.key};
}

void PrefixCache::forget(int block) {
  Entry& e = entries_[static_cast<size_t>(block)];
  if (!e.live) return;
  auto [lo, hi] = by_key_.equal_range(e.key);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == block) {
      by_key_.erase(it);
      break;
    }
  }
  e.live = false;
  ++e.gen;  // a child registered under the old contents can no longer match
  pool_.mark_cached(block, false);
}

}  // namespace tpinfer

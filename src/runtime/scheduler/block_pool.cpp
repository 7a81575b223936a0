// Reference-counted KV blocks with an LRU of reusable cached ones (see block_pool.h).
#include "runtime/scheduler/block_pool.h"

#include "core/error.h"

namespace tpinfer {

BlockPool::BlockPool(int n_blocks)
    : ref_(static_cast<size_t>(n_blocks), 0),
      cached_(static_cast<size_t>(n_blocks), 0),
      lru_at_(static_cast<size_t>(n_blocks)),
      on_lru_(static_cast<size_t>(n_blocks), 0) {
  TPI_CHECK(n_blocks > 0, "block pool: needs at least one block, got " << n_blocks);
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void BlockPool::check(int block) const {
  TPI_CHECK(block >= 0 && block < n_blocks(),
            "block pool: block " << block << " out of range [0, " << n_blocks() << ")");
}

int BlockPool::allocate() {
  int b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    on_lru_[static_cast<size_t>(b)] = 0;
    cached_[static_cast<size_t>(b)] = 0;
    if (on_evict) on_evict(b);
  } else {
    return -1;
  }
  ref_[static_cast<size_t>(b)] = 1;
  return b;
}

void BlockPool::retain(int block) {
  check(block);
  const size_t b = static_cast<size_t>(block);
  if (ref_[b] == 0) {
    TPI_CHECK(on_lru_[b], "block pool: retain of free block " << block << " (not cached)");
    lru_.erase(lru_at_[b]);
    on_lru_[b] = 0;
  }
  ++ref_[b];
}

void BlockPool::release(int block) {
  check(block);
  const size_t b = static_cast<size_t>(block);
  TPI_CHECK(ref_[b] > 0, "block pool: release of free block " << block);
  if (--ref_[b] > 0) return;
  if (cached_[b]) {
    lru_at_[b] = lru_.insert(lru_.end(), block);
    on_lru_[b] = 1;
  } else {
    free_.push_back(block);
  }
}

void BlockPool::mark_cached(int block, bool cached) {
  check(block);
  const size_t b = static_cast<size_t>(block);
  if (static_cast<bool>(cached_[b]) == cached) return;
  cached_[b] = cached ? 1 : 0;
  if (ref_[b] > 0) return;
  // A free block changes lists.
  if (cached) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (*it == block) {
        free_.erase(it);
        break;
      }
    }
    lru_at_[b] = lru_.insert(lru_.end(), block);
    on_lru_[b] = 1;
  } else {
    lru_.erase(lru_at_[b]);
    on_lru_[b] = 0;
    free_.push_back(block);
  }
}

}  // namespace tpinfer

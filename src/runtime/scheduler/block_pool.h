// The KV cache's blocks as the scheduler sees them: block ids [0, n_blocks) with reference
// counts. A block is held by every sequence whose block table names it (a prompt block shared by
// n choices or by a cached prefix has refcount > 1) and returns to the pool when the last holder
// releases it: a block shared by n sequences is freed once. A free block that still holds a
// prefix-cache entry (mark_cached) is kept on an LRU list and only handed out again, least
// recently released first, when no never-cached block is left; the eviction hook then tells the
// prefix index to forget it. The pool knows nothing about tokens: that is the PrefixCache's part.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <vector>

namespace tpinfer {

class BlockPool {
 public:
  explicit BlockPool(int n_blocks);

  int n_blocks() const { return static_cast<int>(ref_.size()); }
  // Blocks allocate() can hand out: never-cached free blocks plus unreferenced cached ones.
  int n_free() const { return static_cast<int>(free_.size() + lru_.size()); }
  int n_used() const { return n_blocks() - n_free(); }  // refcount > 0
  int n_cached_free() const { return static_cast<int>(lru_.size()); }

  // A block for a new holder (refcount 1), or -1 when every block is held. Takes a never-cached
  // block first, else evicts the least recently released cached one (calling on_evict first).
  int allocate();
  // One more holder of a held block, or revives an unreferenced cached block (off the LRU list).
  void retain(int block);
  // One holder fewer; at 0 the block is free again (on the LRU list when it is cached).
  void release(int block);
  int refcount(int block) const { return ref_[static_cast<size_t>(block)]; }

  // Whether the block holds a prefix-cache entry (set by the PrefixCache when it registers or
  // forgets one). A cached block at refcount 0 waits on the LRU list instead of the free list.
  void mark_cached(int block, bool cached);
  bool cached(int block) const { return cached_[static_cast<size_t>(block)] != 0; }

  // Called with a cached block just before allocate() hands it out (its entry must go).
  std::function<void(int)> on_evict;

 private:
  void check(int block) const;

  std::vector<int> ref_;
  std::vector<char> cached_;
  std::vector<int> free_;  // never-cached free blocks (a stack: the lowest ids first)
  std::list<int> lru_;     // unreferenced cached blocks, least recently released first
  std::vector<std::list<int>::iterator> lru_at_;  // where a block sits on lru_ (when it does)
  std::vector<char> on_lru_;
};

}  // namespace tpinfer

// The prefix index: which pool blocks hold the KV of which token prefixes, so a later prompt
// that starts the same way reuses them instead of prefilling again. Only full blocks are cached.
// A block's key chains the keys before it: key = hash(key of the previous block, its block_size
// token ids), with a fixed seed for the first block, so one lookup per block walks a prompt. The
// hash only finds candidates: an entry matches when its token ids are equal AND its previous
// block is the entry just matched (the same block and the same registration, its generation), so
// a hash collision or a reused block can never hand out another prefix's KV.
// Entries live as long as their block: the pool evicts unreferenced cached blocks least recently
// used and this index forgets them then (BlockPool::on_evict).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "runtime/scheduler/block_pool.h"

namespace tpinfer {

class PrefixCache {
 public:
  // A cached block in a chain; the root (before the first block) is Link{}.
  struct Link {
    int block = -1;
    uint32_t gen = 0;
    uint64_t key = 0x6a09e667f3bcc909ull;
    bool valid() const { return block >= 0; }
  };

  PrefixCache(BlockPool& pool, int block_size);
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  int block_size() const { return block_size_; }

  // The cached block that continues `parent` with these block_size ids, or an invalid Link.
  Link find(const Link& parent, const int32_t* ids) const;
  // The longest cached run of full blocks that starts ids[0, n): at most max_blocks blocks, each
  // retained for the caller (refcount + 1).
  std::vector<int> match(const int32_t* ids, int n, int max_blocks, Link* last = nullptr);
  // Registers `block` (full, held by the caller) as continuing `parent` with these ids, and
  // returns its link. When an equal entry exists already (two sequences computed the same
  // prefix), that entry's link is returned and `block` stays uncached.
  Link insert(const Link& parent, const int32_t* ids, int block);

  int n_entries() const { return static_cast<int>(by_key_.size()); }

 private:
  struct Entry {
    bool live = false;
    uint32_t gen = 0;  // bumped each time the block is registered: a reused block is new
    uint64_t key = 0;
    int parent_block = -1;
    uint32_t parent_gen = 0;
    std::vector<int32_t> ids;  // (block_size)
  };
  uint64_t chain_key(uint64_t parent_key, const int32_t* ids) const;
  void forget(int block);

  BlockPool& pool_;
  int block_size_;
  std::vector<Entry> entries_;  // per block
  std::unordered_multimap<uint64_t, int> by_key_;
};

}  // namespace tpinfer

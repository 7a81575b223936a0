// Device side of the paged KV cache (kernels.h KvPages): where a position of one sequence lives
// in the pool. Included only by the .cu files of this folder.
#pragma once

#include <cstdint>

#include "kernels.h"

namespace tpinfer::gpu {

// One sequence's block-table row. cache_row(p) is the pool row (block * block_size + offset)
// holding position p, or -1 when the entry is not a block of the pool; only positions the
// sequence owns may be asked for (the others' entries are never read).
struct PagedRow {
  const int32_t* table = nullptr;
  int shift = 0;  // log2(block_size)
  int n_blocks = 0;

  __device__ __forceinline__ long long cache_row(int p) const {
    const int block = __ldg(table + (p >> shift));
    if (block < 0 || block >= n_blocks) return -1;
    return (static_cast<long long>(block) << shift) + (p & ((1 << shift) - 1));
  }
};

// Row `row` of the step's table (row and position already checked by the caller).
__device__ __forceinline__ PagedRow paged_row(const KvPages& pages, int row) {
  PagedRow r;
  r.table = pages.block_tables + static_cast<long long>(row) * pages.table_stride;
  r.shift = __ffs(pages.block_size) - 1;
  r.n_blocks = pages.n_blocks;
  return r;
}

// Whether token (row, pos) is inside the step's table and the cache.
__device__ __forceinline__ bool paged_token_ok(const KvPages& pages, int row, int pos) {
  return row >= 0 && row < pages.n_rows && pos >= 0 && pos < pages.max_seq &&
         (pos >> (__ffs(pages.block_size) - 1)) < pages.table_stride;
}

}  // namespace tpinfer::gpu

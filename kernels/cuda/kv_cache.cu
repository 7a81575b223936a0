// KV-cache append through the block table: one block per token copies its k and v rows to the
// pool row of (row, position). Rows, positions and the table are read on the device, so a
// captured decode step appends wherever the replay says.
#include "common.cuh"
#include "kernels.h"
#include "kv_pages.cuh"

namespace tpinfer::gpu {
namespace {

template <bool kVec8>
__global__ void kv_append_kernel(bf16* __restrict__ k_cache, bf16* __restrict__ v_cache,
                                 const bf16* __restrict__ k, const bf16* __restrict__ v,
                                 const int32_t* __restrict__ rows,
                                 const int32_t* __restrict__ positions, const KvPages pages,
                                 int kv_width) {
  const int t = blockIdx.x;
  const int row = rows[t];
  const int pos = positions[t];
  if (!paged_token_ok(pages, row, pos)) return;
  const long long cache_row = paged_row(pages, row).cache_row(pos);
  if (cache_row < 0) return;
  const size_t dst = static_cast<size_t>(cache_row) * kv_width;
  const size_t src = static_cast<size_t>(t) * kv_width;
  if constexpr (kVec8) {
    const int n8 = kv_width / 8;
    for (int i = threadIdx.x; i < n8; i += blockDim.x) {
      reinterpret_cast<uint4*>(k_cache + dst)[i] = reinterpret_cast<const uint4*>(k + src)[i];
      reinterpret_cast<uint4*>(v_cache + dst)[i] = reinterpret_cast<const uint4*>(v + src)[i];
    }
  } else {
    for (int i = threadIdx.x; i < kv_width; i += blockDim.x) {
      k_cache[dst + i] = k[src + i];
      v_cache[dst + i] = v[src + i];
    }
  }
}

}  // namespace

void kv_append(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v, const int32_t* rows,
               const int32_t* positions, const KvPages& pages, int n_tokens, int kv_width,
               cudaStream_t stream) {
  if (n_tokens <= 0 || kv_width <= 0) return;
  const bool vec8 =
      kv_width % 8 == 0 && aligned16(k_cache) && aligned16(v_cache) && aligned16(k) && aligned16(v);
  const int threads = 128;
  if (vec8) {
    kv_append_kernel<true><<<n_tokens, threads, 0, stream>>>(k_cache, v_cache, k, v, rows,
                                                             positions, pages, kv_width);
  } else {
    kv_append_kernel<false><<<n_tokens, threads, 0, stream>>>(k_cache, v_cache, k, v, rows,
                                                              positions, pages, kv_width);
  }
}

}  // namespace tpinfer::gpu

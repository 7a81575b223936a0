// KV-cache append: one block per token copies its k and v rows to (slot, position). Positions and
// slots are read on the device, so a captured decode step appends wherever the replay says.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

template <bool kVec8>
__global__ void kv_append_kernel(bf16* __restrict__ k_cache, bf16* __restrict__ v_cache,
                                 const bf16* __restrict__ k, const bf16* __restrict__ v,
                                 const int32_t* __restrict__ slots,
                                 const int32_t* __restrict__ positions, int n_slots, int max_seq,
                                 int kv_width) {
  const int t = blockIdx.x;
  const int slot = slots[t];
  const int pos = positions[t];
  if (slot < 0 || slot >= n_slots || pos < 0 || pos >= max_seq) return;
  const size_t dst = (static_cast<size_t>(slot) * max_seq + pos) * kv_width;
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

void kv_append(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v, const int32_t* slots,
               const int32_t* positions, int n_tokens, int n_slots, int max_seq, int kv_width,
               cudaStream_t stream) {
  if (n_tokens <= 0 || kv_width <= 0) return;
  const bool vec8 =
      kv_width % 8 == 0 && aligned16(k_cache) && aligned16(v_cache) && aligned16(k) && aligned16(v);
  const int threads = 128;
  if (vec8) {
    kv_append_kernel<true><<<n_tokens, threads, 0, stream>>>(k_cache, v_cache, k, v, slots,
                                                             positions, n_slots, max_seq, kv_width);
  } else {
    kv_append_kernel<false><<<n_tokens, threads, 0, stream>>>(
        k_cache, v_cache, k, v, slots, positions, n_slots, max_seq, kv_width);
  }
}

}  // namespace tpinfer::gpu

// Vocab-parallel embedding gather: one block per token, 128-bit copies when rows allow it.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

template <bool kVec8>
__global__ void embed_kernel(bf16* __restrict__ out, const bf16* __restrict__ table,
                             const int32_t* __restrict__ ids, int hidden, int vocab_offset,
                             int vocab_rows) {
  const int t = blockIdx.x;
  const long long row = static_cast<long long>(ids[t]) - vocab_offset;
  const bool inside = row >= 0 && row < vocab_rows;
  bf16* dst = out + static_cast<size_t>(t) * hidden;
  const bf16* src = table + static_cast<size_t>(inside ? row : 0) * hidden;
  if constexpr (kVec8) {
    const int n8 = hidden / 8;
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int i = threadIdx.x; i < n8; i += blockDim.x)
      d[i] = inside ? s[i] : make_uint4(0, 0, 0, 0);
  } else {
    const bf16 zero = __float2bfloat16(0.0f);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = inside ? src[i] : zero;
  }
}

}  // namespace

void embed(bf16* out, const bf16* table, const int32_t* ids, int n_tokens, int hidden,
           int vocab_offset, int vocab_rows, cudaStream_t stream) {
  if (n_tokens <= 0 || hidden <= 0) return;
  const bool vec8 = hidden % 8 == 0 && aligned16(out) && aligned16(table);
  const int threads = 256;
  if (vec8) {
    embed_kernel<true>
        <<<n_tokens, threads, 0, stream>>>(out, table, ids, hidden, vocab_offset, vocab_rows);
  } else {
    embed_kernel<false>
        <<<n_tokens, threads, 0, stream>>>(out, table, ids, hidden, vocab_offset, vocab_rows);
  }
}

}  // namespace tpinfer::gpu

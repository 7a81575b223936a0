// Logits post-processing for greedy sampling: a fused row argmax over f32 logits, so a decode
// step can hand the host one int per sequence instead of a vocab-sized row.
#include <cfloat>
#include <climits>

#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kThreads = 1024;

// (value, index) order: larger value wins, then the lower index; NaN never wins.
__device__ __forceinline__ bool better(float v, int i, float best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__global__ void argmax_kernel(int32_t* __restrict__ index, float* __restrict__ value,
                              const float* __restrict__ logits, int cols, int index_offset) {
  const float* row = logits + static_cast<size_t>(blockIdx.x) * cols;
  float best_v = -FLT_MAX;
  int best_i = INT_MAX;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = row[c];
    if (better(v, c, best_v, best_i)) {
      best_v = v;
      best_i = c;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(kFullMask, best_v, o);
    const int i = __shfl_xor_sync(kFullMask, best_i, o);
    if (better(v, i, best_v, best_i)) {
      best_v = v;
      best_i = i;
    }
  }
  __shared__ float s_v[32];
  __shared__ int s_i[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_v[warp] = best_v;
    s_i[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    best_v = lane < n_warps ? s_v[lane] : -FLT_MAX;
    best_i = lane < n_warps ? s_i[lane] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float v = __shfl_xor_sync(kFullMask, best_v, o);
      const int i = __shfl_xor_sync(kFullMask, best_i, o);
      if (better(v, i, best_v, best_i)) {
        best_v = v;
        best_i = i;
      }
    }
    if (lane == 0) {
      // A row of only NaN or -inf keeps INT_MAX: report its first column.
      if (best_i == INT_MAX) best_i = 0;
      index[blockIdx.x] = index_offset + best_i;
      if (value != nullptr) value[blockIdx.x] = best_v;
    }
  }
}

}  // namespace

void argmax_rows(int32_t* index, float* value, const float* logits, int rows, int cols,
                 int index_offset, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  argmax_kernel<<<rows, kThreads, 0, stream>>>(index, value, logits, cols, index_offset);
}

}  // namespace tpinfer::gpu

// RMSNorm and the fused residual add + RMSNorm of a block's pre-norm. One block per row; fp32
// sum of squares with a block reduction; the rounding follows Hugging Face (normalised value
// rounded to bf16 before the weight multiply, the residual sum rounded to bf16 before its norm).
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

// kAdd: residual += delta first and normalise the (bf16-rounded) sum; otherwise normalise `in`
// (passed as residual, not written). kVec8: 128-bit accesses (cols % 8 == 0, aligned rows).
template <bool kAdd, bool kVec8>
__global__ void rmsnorm_kernel(bf16* out, bf16* residual, const bf16* __restrict__ delta,
                               const bf16* __restrict__ weight, int cols, float eps) {
  const size_t base = static_cast<size_t>(blockIdx.x) * cols;
  bf16* x = residual + base;
  bf16* y = out + base;
  float ss = 0.0f;
  if constexpr (kVec8) {
    for (int i = threadIdx.x * 8; i < cols; i += blockDim.x * 8) {
      float v[8];
      load8(x + i, v);
      if constexpr (kAdd) {
        float d[8];
        load8(delta + base + i, d);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = round_bf16(v[j] + d[j]);
        store8(x + i, v);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += v[j] * v[j];
    }
  } else {
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
      float v = __bfloat162float(x[i]);
      if constexpr (kAdd) {
        v = round_bf16(v + __bfloat162float(delta[base + i]));
        x[i] = __float2bfloat16(v);
      }
      ss += v * v;
    }
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(cols) + eps);
  // Second pass re-reads what this same thread read (or wrote) in the first: no barrier needed,
  // and out may alias the input.
  if constexpr (kVec8) {
    for (int i = threadIdx.x * 8; i < cols; i += blockDim.x * 8) {
      float v[8], w[8];
      load8(x + i, v);
      load8(weight + i, w);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = w[j] * round_bf16(v[j] * inv);
      store8(y + i, v);
    }
  } else {
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
      const float v = __bfloat162float(x[i]);
      y[i] = __float2bfloat16(__bfloat162float(weight[i]) * round_bf16(v * inv));
    }
  }
}

template <bool kAdd>
void launch(bf16* out, bf16* residual, const bf16* delta, const bf16* weight, int rows, int cols,
            float eps, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const bool vec8 = cols % 8 == 0 && aligned16(out) && aligned16(residual) && aligned16(weight) &&
                    (!kAdd || aligned16(delta));
  // About one access per thread: a decode step normalises a single row, so latency matters.
  const int per_row = vec8 ? cols / 8 : cols;
  const int threads = per_row >= 1024 ? 1024 : (per_row + 31) / 32 * 32;
  if (vec8) {
    rmsnorm_kernel<kAdd, true>
        <<<rows, threads, 0, stream>>>(out, residual, delta, weight, cols, eps);
  } else {
    rmsnorm_kernel<kAdd, false>
        <<<rows, threads, 0, stream>>>(out, residual, delta, weight, cols, eps);
  }
}

}  // namespace

void rmsnorm(bf16* out, const bf16* in, const bf16* weight, int rows, int cols, float eps,
             cudaStream_t stream) {
  // The kernel does not write `residual` when kAdd is false.
  launch<false>(out, const_cast<bf16*>(in), nullptr, weight, rows, cols, eps, stream);
}

void add_rmsnorm(bf16* out, bf16* residual, const bf16* delta, const bf16* weight, int rows,
                 int cols, float eps, cudaStream_t stream) {
  launch<true>(out, residual, delta, weight, rows, cols, eps, stream);
}

}  // namespace tpinfer::gpu

// The int8-weight projection for small batches (the CUDA twin of kernels/cpu/gemm_int8.h's
// weights; activations stay in floating point here): one warp per output row streams the row's
// int8 weights with 128-bit loads (16 weights per lane and load, bypassing L1: read once per
// step), converts them to float, dots them with the T activation rows (bf16 or f32, read through
// the read-only cache) and multiplies each 16-weight chunk's sum by its group's scale. fp32
// accumulation, one warp reduction per token. Plain int->float math: no dp4a, since the
// activations are not quantized (the result is the float product with dequantized weights).
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kWarps = 8;  // rows per block

// 16 int8 weights (one uint4) -> float.
__device__ __forceinline__ void unpack16_i8(const uint4& u, float f[16]) {
  const unsigned v[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      // Byte b of the word, sign-extended (little-endian: byte 0 is the lowest).
      f[4 * i + b] = static_cast<float>(static_cast<int>(v[i] << (24 - 8 * b)) >> 24);
    }
  }
}

// 16 activations at x[i * 16 ...] -> float.
__device__ __forceinline__ void load16(const bf16* x, int chunk, float f[16]) {
  const uint4* p = reinterpret_cast<const uint4*>(x) + 2 * chunk;
  unpack8(__ldg(p), f);
  unpack8(__ldg(p + 1), f + 8);
}
__device__ __forceinline__ void load16(const float* x, int chunk, float f[16]) {
  const float4* p = reinterpret_cast<const float4*>(x) + 4 * chunk;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float4 v = __ldg(p + i);
    f[4 * i] = v.x;
    f[4 * i + 1] = v.y;
    f[4 * i + 2] = v.z;
    f[4 * i + 3] = v.w;
  }
}

template <int kTokens, class X, bool kOutF32>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_int8_kernel(void* __restrict__ out, const X* __restrict__ x, const int8_t* __restrict__ w,
                     const float* __restrict__ scales, int group, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= n) return;  // uniform per warp: the shuffles below stay full-mask
  const int k16 = k / 16;
  const int ng = (k + group - 1) / group;
  const uint4* w_row = reinterpret_cast<const uint4*>(w + static_cast<size_t>(row) * k);
  const float* s_row = scales + static_cast<size_t>(row) * ng;
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  for (int i = lane; i < k16; i += 32) {
    float wf[16];
    unpack16_i8(__ldcs(w_row + i), wf);
    const float s = __ldg(s_row + (i * 16) / group);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      float xf[16];
      load16(x + static_cast<size_t>(t) * k, i, xf);
      float d = 0.0f;
#pragma unroll
      for (int j = 0; j < 16; ++j) d = fmaf(wf[j], xf[j], d);
      acc[t] = fmaf(d, s, acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = warp_sum(acc[t]);
  if (lane == 0) {
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      const size_t o = static_cast<size_t>(t) * n + row;
      if constexpr (kOutF32) {
        static_cast<float*>(out)[o] = acc[t];
      } else {
        static_cast<bf16*>(out)[o] = __float2bfloat16(acc[t]);
      }
    }
  }
}

// Any k (rows not 16-byte aligned): lane l takes elements l, l + 32, ... one byte at a time.
// Slow, for the odd shapes only (a tensor-parallel slice of 86 columns, tiny test models).
template <int kTokens, class X, bool kOutF32>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_int8_any_k(void* __restrict__ out, const X* __restrict__ x, const int8_t* __restrict__ w,
                    const float* __restrict__ scales, int group, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= n) return;
  const int ng = (k + group - 1) / group;
  const int8_t* w_row = w + static_cast<size_t>(row) * k;
  const float* s_row = scales + static_cast<size_t>(row) * ng;
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  for (int i = lane; i < k; i += 32) {
    const float wv = static_cast<float>(w_row[i]) * __ldg(s_row + i / group);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      acc[t] = fmaf(wv, static_cast<float>(x[static_cast<size_t>(t) * k + i]), acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = warp_sum(acc[t]);
  if (lane == 0) {
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      const size_t o = static_cast<size_t>(t) * n + row;
      if constexpr (kOutF32) {
        static_cast<float*>(out)[o] = acc[t];
      } else {
        static_cast<bf16*>(out)[o] = __float2bfloat16(acc[t]);
      }
    }
  }
}

template <int kTokens, class X>
void launch(void* out, bool out_f32, const X* x, const int8_t* w, const float* scales, int group,
            int n, int k, cudaStream_t stream) {
  const int grid = static_cast<int>(ceil_div(n, kWarps));
  const bool aligned = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) % 16 == 0;
  if (k % 16 != 0 || group % 16 != 0 || !aligned) {
    if (out_f32) {
      gemv_int8_any_k<kTokens, X, true>
          <<<grid, kWarps * 32, 0, stream>>>(out, x, w, scales, group, n, k);
    } else {
      gemv_int8_any_k<kTokens, X, false>
          <<<grid, kWarps * 32, 0, stream>>>(out, x, w, scales, group, n, k);
    }
    return;
  }
  if (out_f32) {
    gemv_int8_kernel<kTokens, X, true>
        <<<grid, kWarps * 32, 0, stream>>>(out, x, w, scales, group, n, k);
  } else {
    gemv_int8_kernel<kTokens, X, false>
        <<<grid, kWarps * 32, 0, stream>>>(out, x, w, scales, group, n, k);
  }
}

template <class X>
void dispatch(void* out, bool out_f32, const X* x, const int8_t* w, const float* scales, int group,
              int n_tokens, int n, int k, cudaStream_t stream) {
  switch (n_tokens) {
    case 1:
      return launch<1>(out, out_f32, x, w, scales, group, n, k, stream);
    case 2:
      return launch<2>(out, out_f32, x, w, scales, group, n, k, stream);
    case 3:
      return launch<3>(out, out_f32, x, w, scales, group, n, k, stream);
    case 4:
      return launch<4>(out, out_f32, x, w, scales, group, n, k, stream);
    case 5:
      return launch<5>(out, out_f32, x, w, scales, group, n, k, stream);
    case 6:
      return launch<6>(out, out_f32, x, w, scales, group, n, k, stream);
    case 7:
      return launch<7>(out, out_f32, x, w, scales, group, n, k, stream);
    case 8:
      return launch<8>(out, out_f32, x, w, scales, group, n, k, stream);
    default:
      return;  // larger batches: not this kernel
  }
}

}  // namespace

void gemv_int8(void* out, bool out_f32, const void* x, bool x_f32, const int8_t* w,
               const float* scales, int group, int n_tokens, int n, int k, cudaStream_t stream) {
  if (n <= 0 || n_tokens <= 0) return;
  if (x_f32) {
    dispatch(out, out_f32, static_cast<const float*>(x), w, scales, group, n_tokens, n, k, stream);
  } else {
    dispatch(out, out_f32, static_cast<const bf16*>(x), w, scales, group, n_tokens, n, k, stream);
  }
}

}  // namespace tpinfer::gpu

// The bandwidth-bound projection of batch-1 (up to 8) decode: each warp streams one weight row
// (or a 1/2, 1/4, 1/8 share of it when the rows are too few to fill the GPU) with 128-bit loads
// that bypass L1 (__ldcs: read once per token), four loads in flight per lane, and dots it with
// the T activation rows (read through the read-only cache; they are shared by every warp). fp32
// accumulation, one warp reduction per token, shared memory to add a split row's shares.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kWarps = 8;
constexpr int kUnroll = 4;

// kSplit warps share one row: warp `part` takes every kSplit-th group of 32 16-byte chunks, its
// lanes the chunks inside a group, and the partial sums meet in shared memory. With few rows
// (k/v projections, tensor-parallel slices) one warp per row leaves most of the GPU idle and too
// few loads in flight; splitting along k keeps every SM streaming.
template <int kTokens, bool kOutF32, int kSplit>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(void* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ w,
                int n, int k) {
  constexpr int kRowsPerBlock = kWarps / kSplit;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int part = warp % kSplit;
  const int row = blockIdx.x * kRowsPerBlock + warp / kSplit;
  const bool live = row < n;  // uniform per warp: the shuffles below stay full-mask
  const int k8 = k / 8;
  const uint4* x8 = reinterpret_cast<const uint4*>(x);
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  if (live) {
    const uint4* w_row = reinterpret_cast<const uint4*>(w + static_cast<size_t>(row) * k);
    constexpr int kStride = 32 * kSplit;  // chunks between this warp's consecutive groups
    for (int base = part * 32 + lane; base < k8; base += kStride * kUnroll) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = base + u * kStride;
        wv[u] = i < k8 ? __ldcs(w_row + i) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = base + u * kStride;
        if (i < k8) {
          float wf[8];
          unpack8(wv[u], wf);
#pragma unroll
          for (int t = 0; t < kTokens; ++t) {
            float xf[8];
            unpack8(__ldg(x8 + static_cast<size_t>(t) * k8 + i), xf);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[t] = fmaf(wf[j], xf[j], acc[t]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = warp_sum(acc[t]);
  if constexpr (kSplit > 1) {
    __shared__ float partial[kWarps][kTokens];
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < kTokens; ++t) partial[warp][t] = acc[t];
    }
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      float sum = 0.0f;
#pragma unroll
      for (int s = 0; s < kSplit; ++s) sum += partial[warp + s][t];
      acc[t] = sum;
    }
  }
  if (live && lane == 0) {
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

template <int kTokens, int kSplit>
void launch_split(void* out, bool out_f32, const bf16* x, const bf16* w, int n, int k,
                  cudaStream_t stream) {
  const int grid = static_cast<int>(ceil_div(n, kWarps / kSplit));
  if (out_f32) {
    gemv_kernel<kTokens, true, kSplit><<<grid, kWarps * 32, 0, stream>>>(out, x, w, n, k);
  } else {
    gemv_kernel<kTokens, false, kSplit><<<grid, kWarps * 32, 0, stream>>>(out, x, w, n, k);
  }
}

template <int kTokens>
void launch(void* out, bool out_f32, const bf16* x, const bf16* w, int n, int k, int split,
            cudaStream_t stream) {
  switch (split) {
    case 1:
      return launch_split<kTokens, 1>(out, out_f32, x, w, n, k, stream);
    case 2:
      return launch_split<kTokens, 2>(out, out_f32, x, w, n, k, stream);
    case 4:
      return launch_split<kTokens, 4>(out, out_f32, x, w, n, k, stream);
    default:
      return launch_split<kTokens, 8>(out, out_f32, x, w, n, k, stream);
  }
}

}  // namespace

int gemv_split(int n, int k, int sm_count) {
  // Enough warps for about 32 per SM (half of what an SM holds), each with at least one group
  // of 32 chunks of k to stream.
  const int64_t target_warps = static_cast<int64_t>(sm_count > 0 ? sm_count : 1) * 32;
  int split = 1;
  while (split < kWarps && static_cast<int64_t>(n) * split < target_warps &&
         k / 8 >= 32 * split * 2) {
    split *= 2;
  }
  return split;
}

void gemv(void* out, bool out_f32, const bf16* x, const bf16* w, int n_tokens, int n, int k,
          int sm_count, cudaStream_t stream) {
  if (n <= 0 || n_tokens <= 0) return;
  const int split = gemv_split(n, k, sm_count);
  switch (n_tokens) {
    case 1:
      return launch<1>(out, out_f32, x, w, n, k, split, stream);
    case 2:
      return launch<2>(out, out_f32, x, w, n, k, split, stream);
    case 3:
      return launch<3>(out, out_f32, x, w, n, k, split, stream);
    case 4:
      return launch<4>(out, out_f32, x, w, n, k, split, stream);
    case 5:
      return launch<5>(out, out_f32, x, w, n, k, split, stream);
    case 6:
      return launch<6>(out, out_f32, x, w, n, k, split, stream);
    case 7:
      return launch<7>(out, out_f32, x, w, n, k, split, stream);
    case 8:
      return launch<8>(out, out_f32, x, w, n, k, split, stream);
    default:
      return;  // the backend routes larger batches to cuBLAS
  }
}

}  // namespace tpinfer::gpu

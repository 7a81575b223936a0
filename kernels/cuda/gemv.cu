// The bandwidth-bound projection of batch-1 (up to 8) decode: each warp streams one weight row
// with 128-bit loads that bypass L1 (__ldcs: read once per token), four loads in flight per
// lane, and dots it with the T activation rows (read through the read-only cache; they are
// shared by every warp). fp32 accumulation, one warp reduction per token at the end.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kWarps = 8;
constexpr int kUnroll = 4;

template <int kTokens, bool kOutF32>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(void* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ w,
                int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= n) return;  // whole warp: the shuffles below stay full-mask
  const int k8 = k / 8;
  const uint4* w_row = reinterpret_cast<const uint4*>(w + static_cast<size_t>(row) * k);
  const uint4* x8 = reinterpret_cast<const uint4*>(x);
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  for (int base = lane; base < k8; base += 32 * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * 32;
      wv[u] = i < k8 ? __ldcs(w_row + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * 32;
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

template <int kTokens>
void launch(void* out, bool out_f32, const bf16* x, const bf16* w, int n, int k,
            cudaStream_t stream) {
  const int grid = static_cast<int>(ceil_div(n, kWarps));
  if (out_f32) {
    gemv_kernel<kTokens, true><<<grid, kWarps * 32, 0, stream>>>(out, x, w, n, k);
  } else {
    gemv_kernel<kTokens, false><<<grid, kWarps * 32, 0, stream>>>(out, x, w, n, k);
  }
}

}  // namespace

void gemv(void* out, bool out_f32, const bf16* x, const bf16* w, int n_tokens, int n, int k,
          cudaStream_t stream) {
  if (n <= 0 || n_tokens <= 0) return;
  switch (n_tokens) {
    case 1:
      return launch<1>(out, out_f32, x, w, n, k, stream);
    case 2:
      return launch<2>(out, out_f32, x, w, n, k, stream);
    case 3:
      return launch<3>(out, out_f32, x, w, n, k, stream);
    case 4:
      return launch<4>(out, out_f32, x, w, n, k, stream);
    case 5:
      return launch<5>(out, out_f32, x, w, n, k, stream);
    case 6:
      return launch<6>(out, out_f32, x, w, n, k, stream);
    case 7:
      return launch<7>(out, out_f32, x, w, n, k, stream);
    case 8:
      return launch<8>(out, out_f32, x, w, n, k, stream);
    default:
      return;  // the backend routes larger batches to cuBLAS
  }
}

}  // namespace tpinfer::gpu

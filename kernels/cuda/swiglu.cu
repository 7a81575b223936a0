// SwiGLU activation: out = silu(gate) * up, elementwise, 128-bit accesses when aligned.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float silu(float g) {
  return g / (1.0f + __expf(-g));
}

__global__ void silu_mul_vec8_kernel(bf16* out, const bf16* __restrict__ gate,
                                     const bf16* __restrict__ up, int64_t n8) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n8;
       i += stride) {
    float g[8], u[8];
    load8(gate + i * 8, g);
    load8(up + i * 8, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = silu(g[j]) * u[j];
    store8(out + i * 8, g);
  }
}

__global__ void silu_mul_kernel(bf16* out, const bf16* __restrict__ gate,
                                const bf16* __restrict__ up, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = __float2bfloat16(silu(__bfloat162float(gate[i])) * __bfloat162float(up[i]));
  }
}

int grid_for(int64_t work) {
  const int64_t blocks = ceil_div(work, kThreads);
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace

void silu_mul(bf16* out, const bf16* gate, const bf16* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  if (n % 8 == 0 && aligned16(out) && aligned16(gate) && aligned16(up)) {
    silu_mul_vec8_kernel<<<grid_for(n / 8), kThreads, 0, stream>>>(out, gate, up, n / 8);
  } else {
    silu_mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, gate, up, n);
  }
}

}  // namespace tpinfer::gpu

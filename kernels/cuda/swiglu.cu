// SwiGLU activation: out = silu(gate) * up, elementwise, 128-bit accesses when aligned; and
// its fused form over the gate_up projection's rows [gate | up].
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

// gate_up rows are [gate | up] (2I wide); i8 counts groups of 8 outputs (I % 8 == 0).
__global__ void silu_mul_fused_vec8_kernel(bf16* out, const bf16* __restrict__ gate_up, int64_t n8,
                                           int64_t I8) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n8;
       i += stride) {
    const int64_t t = i / I8, c = i - t * I8;
    const bf16* g_row = gate_up + t * 16 * I8;
    float g[8], u[8];
    load8(g_row + c * 8, g);
    load8(g_row + (I8 + c) * 8, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) g[j] = silu(g[j]) * u[j];
    store8(out + i * 8, g);
  }
}

__global__ void silu_mul_fused_kernel(bf16* out, const bf16* __restrict__ gate_up, int64_t n,
                                      int64_t I) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t t = i / I, c = i - t * I;
    const bf16* g_row = gate_up + t * 2 * I;
    out[i] = __float2bfloat16(silu(__bfloat162float(g_row[c])) * __bfloat162float(g_row[I + c]));
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

void silu_mul_fused(bf16* out, const bf16* gate_up, int64_t rows, int64_t I, cudaStream_t stream) {
  const int64_t n = rows * I;
  if (n <= 0) return;
  if (I % 8 == 0 && aligned16(out) && aligned16(gate_up)) {
    silu_mul_fused_vec8_kernel<<<grid_for(n / 8), kThreads, 0, stream>>>(out, gate_up, n / 8,
                                                                         I / 8);
  } else {
    silu_mul_fused_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, gate_up, n, I);
  }
}

}  // namespace tpinfer::gpu

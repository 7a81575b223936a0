// Bias add for linear layers with biases (Qwen2 q/k/v, Llama attention_bias / mlp_bias):
// out[t, n] += bias[n], in place on a bf16 [rows, cols] activation.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void add_bias_kernel(bf16* out, const bf16* __restrict__ bias, int64_t n, int64_t cols) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % cols]));
  }
}

}  // namespace

void add_bias(bf16* out, const bf16* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  const int64_t blocks = ceil_div(n, kThreads);
  add_bias_kernel<<<static_cast<int>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(
      out, bias, n, cols);
}

}  // namespace tpinfer::gpu

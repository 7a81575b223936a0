// The read-bandwidth probe: streams a buffer once with 128-bit loads and reduces it, which is
// what a weight-bound decode step does. tpinfer-cuda-bandwidth times it next to a D2D copy.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kThreads = 512;
constexpr int kBlocks = 132 * 8;  // enough resident warps to saturate HBM on H100/H200

__global__ void read_probe_kernel(float* __restrict__ sink, const uint4* __restrict__ data,
                                  size_t n16) {
  uint32_t acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n16;
       i += stride) {
    const uint4 v = __ldcs(data + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  const float s = block_sum(static_cast<float>(acc & 0xffu));
  if (threadIdx.x == 0) sink[blockIdx.x] = s;
}

}  // namespace

int read_probe_blocks() {
  return kBlocks;
}

void read_probe(float* sink, const void* data, size_t n16, cudaStream_t stream) {
  read_probe_kernel<<<kBlocks, kThreads, 0, stream>>>(sink, static_cast<const uint4*>(data), n16);
}

}  // namespace tpinfer::gpu

// Dtype conversion of activations (f32 / f16 / bf16, round to nearest even) and row gathers of
// any element type (the engine picks the last token of each sequence before the lm_head).
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(__half x) {
  return __half2float(x);
}
__device__ __forceinline__ float to_f32(bf16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) {
  return __float2bfloat16(x);
}

template <typename Out, typename In>
__global__ void convert_kernel(Out* __restrict__ out, const In* __restrict__ in, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = from_f32<Out>(to_f32(in[i]));
  }
}

template <typename Out, typename In>
void launch_convert(void* out, const void* in, int64_t n, cudaStream_t stream) {
  const int64_t blocks = ceil_div(n, kThreads);
  const int grid = static_cast<int>(blocks < 65535 ? blocks : 65535);
  convert_kernel<Out, In>
      <<<grid, kThreads, 0, stream>>>(static_cast<Out*>(out), static_cast<const In*>(in), n);
}

template <typename Out>
void convert_from(void* out, const void* in, ElemType in_type, int64_t n, cudaStream_t stream) {
  switch (in_type) {
    case ElemType::f32:
      return launch_convert<Out, float>(out, in, n, stream);
    case ElemType::f16:
      return launch_convert<Out, __half>(out, in, n, stream);
    case ElemType::bf16:
      return launch_convert<Out, bf16>(out, in, n, stream);
  }
}

// Word = the widest access that divides the row size and both base addresses.
template <typename Word>
__global__ void gather_rows_kernel(Word* __restrict__ out, const Word* __restrict__ in,
                                   const int32_t* __restrict__ rows, int n_in_rows,
                                   int64_t row_words) {
  const int i = blockIdx.x;
  const int r = rows[i];
  const bool inside = r >= 0 && r < n_in_rows;
  Word* dst = out + static_cast<int64_t>(i) * row_words;
  const Word* src = in + static_cast<int64_t>(inside ? r : 0) * row_words;
  for (int64_t w = threadIdx.x; w < row_words; w += blockDim.x) dst[w] = inside ? src[w] : Word{};
}

template <typename Word>
void launch_gather(void* out, const void* in, const int32_t* rows, int n_out_rows, int n_in_rows,
                   size_t row_bytes, cudaStream_t stream) {
  gather_rows_kernel<Word>
      <<<n_out_rows, 128, 0, stream>>>(static_cast<Word*>(out), static_cast<const Word*>(in), rows,
                                       n_in_rows, static_cast<int64_t>(row_bytes / sizeof(Word)));
}

}  // namespace

void convert(void* out, ElemType out_type, const void* in, ElemType in_type, int64_t n,
             cudaStream_t stream) {
  if (n <= 0) return;
  switch (out_type) {
    case ElemType::f32:
      return convert_from<float>(out, in, in_type, n, stream);
    case ElemType::f16:
      return convert_from<__half>(out, in, in_type, n, stream);
    case ElemType::bf16:
      return convert_from<bf16>(out, in, in_type, n, stream);
  }
}

void gather_rows(void* out, const void* in, const int32_t* rows, int n_out_rows, int n_in_rows,
                 size_t row_bytes, cudaStream_t stream) {
  if (n_out_rows <= 0 || row_bytes == 0) return;
  const uintptr_t bits =
      reinterpret_cast<uintptr_t>(out) | reinterpret_cast<uintptr_t>(in) | row_bytes;
  if ((bits & 15u) == 0)
    return launch_gather<uint4>(out, in, rows, n_out_rows, n_in_rows, row_bytes, stream);
  if ((bits & 7u) == 0)
    return launch_gather<uint2>(out, in, rows, n_out_rows, n_in_rows, row_bytes, stream);
  if ((bits & 3u) == 0)
    return launch_gather<uint32_t>(out, in, rows, n_out_rows, n_in_rows, row_bytes, stream);
  if ((bits & 1u) == 0)
    return launch_gather<uint16_t>(out, in, rows, n_out_rows, n_in_rows, row_bytes, stream);
  launch_gather<uint8_t>(out, in, rows, n_out_rows, n_in_rows, row_bytes, stream);
}

}  // namespace tpinfer::gpu

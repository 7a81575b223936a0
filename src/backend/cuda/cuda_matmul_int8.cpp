// int8 linear weights on the CUDA backend (scripts/convert_hf.py --dtype int8; docs/INT8.md):
// upload of the int8 data and its f32 scales, and the projection through the int8 GEMV
// (kernels/cuda/gemv_int8.cu) in chunks of up to kGemvMaxTokens tokens. Decode (one token per
// slot) is one launch; a prefill re-reads the weights once per chunk of 8 tokens, which is
// correct but slower than the bf16 cuBLAS path (a dequantizing GEMM is not written yet).
#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "cuda/kernels.h"

namespace tpinfer {

void CudaBackend::upload_int8_weight(Tensor dst, const int8_t* q, const float* scales) {
  require_not_capturing("upload_int8_weight");
  TPI_CHECK(dst.dtype == DType::i8 && dst.data != nullptr && dst.scales != nullptr &&
                dst.group > 0 && q != nullptr && scales != nullptr,
            "cuda upload_int8_weight: destination must be an i8 tensor with scales");
  copy_to_device(dst.data, q, static_cast<size_t>(dst.numel()));
  copy_to_device(dst.scales, scales, sizeof(float) * dst.rows * dst.n_groups());
}

void CudaBackend::matmul_int8(Tensor out, Tensor in, Tensor weight) {
  TPI_CHECK(in.dtype == DType::bf16 && (out.dtype == DType::bf16 || out.dtype == DType::f32),
            "cuda matmul (int8 weight): in " << dtype_name(in.dtype) << ", out "
                                             << dtype_name(out.dtype)
                                             << " (expected bf16, and bf16 or f32)");
  TPI_CHECK(in.cols == weight.cols && out.rows == in.rows && out.cols == weight.rows,
            "cuda matmul (int8 weight): shapes out["
                << out.rows << "," << out.cols << "] in[" << in.rows << "," << in.cols
                << "] weight[" << weight.rows << "," << weight.cols << "] do not agree");
  TPI_CHECK(weight.scales != nullptr && weight.group > 0,
            "cuda matmul (int8 weight): the weight has no scales");
  TPI_CHECK(in.rows <= INT32_MAX && weight.rows <= INT32_MAX && in.cols <= INT32_MAX,
            "cuda matmul (int8 weight): sizes beyond 32-bit");
  const int n = static_cast<int>(weight.rows), k = static_cast<int>(in.cols);
  const size_t out_elem = dtype_size(out.dtype);
  for (int64_t t0 = 0; t0 < in.rows; t0 += gpu::kGemvMaxTokens) {
    const int t = static_cast<int>(std::min<int64_t>(gpu::kGemvMaxTokens, in.rows - t0));
    CUDA_LAUNCH(gpu::gemv_int8(
        static_cast<char*>(out.data) + static_cast<size_t>(t0) * n * out_elem,
        out.dtype == DType::f32,
        static_cast<const uint16_t*>(in.data) + static_cast<size_t>(t0) * k, false,
        static_cast<const int8_t*>(weight.data), static_cast<const float*>(weight.scales),
        static_cast<int>(weight.group), t, n, k, stream_));
  }
}

}  // namespace tpinfer

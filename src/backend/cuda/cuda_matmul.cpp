// Projections: out[T, N] = in[T, K] @ W[N, K]^T with bf16 operands and fp32 accumulation, out
// bf16 or f32 (logits). cuBLAS is column-major, so it computes out^T [N x T] = W_cm^T in_cm with
// W_cm = W seen column-major (K x N, ld K, transposed: CUBLAS_OP_T) and in_cm = in seen
// column-major (K x T, ld K); out^T column-major (N x T, ld N) is out row-major. Three paths
// (CudaMatmulPath): the hand-written GEMV for batch-1 decode, cuBLASLt with a heuristic cached
// per shape, classic cublasGemmEx. All use the workspace set at construction, so they capture
// into a graph without allocating.
#include <cstdint>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "cuda/kernels.h"

namespace tpinfer {
namespace {

// Token counts up to this use the GEMV in automatic mode: one token is purely weight-bandwidth
// bound, where a warp-per-row GEMV matches or beats cuBLAS; tpinfer-cuda-gemv-bench measures
// where the crossover sits on a given GPU.
constexpr int64_t kGemvAutoMaxTokens = 1;

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// The largest power of two up to 256 that divides the address.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

cudaDataType_t cuda_type(DType d) {
  return d == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;
}

}  // namespace

CudaBackend::LtPlan& CudaBackend::lt_plan(const Tensor& out, const Tensor& in,
                                          const Tensor& weight) {
  const int64_t t = in.rows, n = weight.rows, k = in.cols;
  const uint32_t align_w = alignment_of(weight.data), align_in = alignment_of(in.data),
                 align_out = alignment_of(out.data);
  const LtKey key{t, n, k, static_cast<int>(out.dtype), align_w, align_in, align_out};
  auto it = lt_plans_.find(key);
  if (it != lt_plans_.end()) return it->second;
  LtPlan p;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, n, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, t, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(out.dtype), n, t, n));
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &blas_workspace_bytes_,
                                                    sizeof(blas_workspace_bytes_)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_w, sizeof(align_w)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_in, sizeof(align_in)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_out, sizeof(align_out)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_out, sizeof(align_out)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(cublaslt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
    p.algo = result.algo;
    p.ok = true;
  }
  return lt_plans_.emplace(key, p).first->second;
}

void CudaBackend::matmul_cublaslt(Tensor out, Tensor in, Tensor weight) {
  LtPlan& p = lt_plan(out, in, weight);
  if (!p.ok) return matmul_cublas(out, in, weight);  // no Lt algorithm for this shape
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(cublaslt_, p.op, &alpha, weight.data, p.a, in.data, p.b, &beta,
                              out.data, p.c, out.data, p.c, &p.algo, blas_workspace_,
                              blas_workspace_bytes_, stream_));
}

void CudaBackend::matmul_cublas(Tensor out, Tensor in, Tensor weight) {
  const float alpha = 1.0f, beta = 0.0f;
  const int t = static_cast<int>(in.rows), n = static_cast<int>(weight.rows),
            k = static_cast<int>(in.cols);
  CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, t, k, &alpha, weight.data,
                            CUDA_R_16BF, k, in.data, CUDA_R_16BF, k, &beta, out.data,
                            cuda_type(out.dtype), n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::matmul(Tensor out, Tensor in, Tensor weight) {
  if (weight.dtype == DType::i8) return matmul_int8(out, in, weight);
  TPI_CHECK(in.dtype == DType::bf16 && weight.dtype == DType::bf16 &&
                (out.dtype == DType::bf16 || out.dtype == DType::f32),
            "cuda matmul: in " << dtype_name(in.dtype) << ", weight " << dtype_name(weight.dtype)
                               << ", out " << dtype_name(out.dtype)
                               << " (expected bf16, bf16, and bf16 or f32)");
  TPI_CHECK(in.cols == weight.cols && out.rows == in.rows && out.cols == weight.rows,
            "cuda matmul: shapes out[" << out.rows << "," << out.cols << "] in[" << in.rows << ","
                                       << in.cols << "] weight[" << weight.rows << ","
                                       << weight.cols << "] do not agree");
  TPI_CHECK(in.rows <= INT32_MAX && weight.rows <= INT32_MAX && in.cols <= INT32_MAX,
            "cuda matmul: sizes beyond 32-bit");
  if (in.rows == 0 || weight.rows == 0) return;
  TPI_CHECK(in.data != nullptr && weight.data != nullptr && out.data != nullptr,
            "cuda matmul: null pointer");
  const bool gemv_fits = in.rows <= gpu::kGemvMaxTokens && in.cols % 8 == 0 && aligned16(in.data) &&
                         aligned16(weight.data);
  bool use_gemv = false;
  switch (matmul_path_) {
    case CudaMatmulPath::automatic:
      use_gemv = gemv_fits && in.rows <= kGemvAutoMaxTokens;
      break;
    case CudaMatmulPath::gemv:
      use_gemv = gemv_fits;
      break;
    case CudaMatmulPath::cublaslt:
    case CudaMatmulPath::cublas:
      use_gemv = false;
      break;
  }
  if (use_gemv) {
    CUDA_LAUNCH(gpu::gemv(out.data, out.dtype == DType::f32, static_cast<const gpu::bf16*>(in.data),
                          static_cast<const gpu::bf16*>(weight.data), static_cast<int>(in.rows),
                          static_cast<int>(weight.rows), static_cast<int>(in.cols), sm_count_,
                          stream_));
    return;
  }
  if (in.cols == 0) {  // an empty reduction: cuBLAS would reject k = 0
    CUDA_CHECK(cudaMemsetAsync(out.data, 0, out.bytes(), stream_));
    return;
  }
  if (matmul_path_ == CudaMatmulPath::cublas) return matmul_cublas(out, in, weight);
  matmul_cublaslt(out, in, weight);
}

}  // namespace tpinfer

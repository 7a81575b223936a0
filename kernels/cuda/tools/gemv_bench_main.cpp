// tpinfer-cuda-gemv-bench: the hand-written bf16 GEMV against cuBLAS (cublasGemmEx) and
// cuBLASLt on the projection shapes of Qwen3-4B and Mistral-7B at tp=1 (or --n/--k), for 1..8
// tokens. Reports the median time, the effective weight bandwidth and the largest difference
// to cuBLAS, so the backend's default (TPINFER_CUDA_MATMUL=auto) can be checked on a new GPU.
//   tpinfer-cuda-gemv-bench [--device N] [--iters N] [--n N --k K] [--tokens T]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cuda/kernels.h"

namespace {

#define GB_CHECK(stmt)                                                                          \
  do {                                                                                          \
    const cudaError_t e_ = (stmt);                                                              \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s failed: %s at %s:%d\n", #stmt, cudaGetErrorString(e_), __FILE__, \
                   __LINE__);                                                                   \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)
#define GB_CUBLAS(stmt)                                                                            \
  do {                                                                                             \
    const cublasStatus_t s_ = (stmt);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                             \
      std::fprintf(stderr, "%s failed: %s at %s:%d\n", #stmt, cublasGetStatusString(s_), __FILE__, \
                   __LINE__);                                                                      \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

struct Shape {
  const char* name;
  int n, k;
};

template <typename Fn>
float median_ms(cudaStream_t stream, int iters, Fn fn) {
  cudaEvent_t a, b;
  GB_CHECK(cudaEventCreate(&a));
  GB_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    GB_CHECK(cudaEventRecord(a, stream));
    fn();
    GB_CHECK(cudaEventRecord(b, stream));
    GB_CHECK(cudaEventSynchronize(b));
    float t = 0;
    GB_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  GB_CHECK(cudaEventDestroy(a));
  GB_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// out[T, N] (column-major N x T) = W[N, K] (column-major K x N, transposed) x in[T, K].
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
};

LtPlan make_lt_plan(cublasLtHandle_t lt, int t, int n, int k, size_t workspace) {
  LtPlan p;
  GB_CUBLAS(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  GB_CUBLAS(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  GB_CUBLAS(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  GB_CUBLAS(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, n, k));
  GB_CUBLAS(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, t, k));
  GB_CUBLAS(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, n, t, n));
  cublasLtMatmulPreference_t pref;
  GB_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  GB_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &workspace, sizeof(workspace)));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  if (cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found) ==
          CUBLAS_STATUS_SUCCESS &&
      found > 0) {
    p.algo = res.algo;
    p.ok = true;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  return p;
}

void destroy(LtPlan& p) {
  cublasLtMatrixLayoutDestroy(p.a);
  cublasLtMatrixLayoutDestroy(p.b);
  cublasLtMatrixLayoutDestroy(p.c);
  cublasLtMatmulDescDestroy(p.op);
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0, iters = 50, only_n = 0, only_k = 0, only_t = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
    if (a == "--device")
      device = next();
    else if (a == "--iters")
      iters = std::max(1, next());
    else if (a == "--n")
      only_n = next();
    else if (a == "--k")
      only_k = next();
    else if (a == "--tokens")
      only_t = next();
    else {
      std::fprintf(stderr, "usage: %s [--device N] [--iters N] [--n N --k K] [--tokens T]\n",
                   argv[0]);
      return 2;
    }
  }
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::fprintf(stderr, "tpinfer-cuda-gemv-bench: no CUDA device (%s)\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0");
    return 77;
  }
  GB_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop;
  GB_CHECK(cudaGetDeviceProperties(&prop, device));

  std::vector<Shape> shapes = {
      {"qwen3-4b q_proj", 4096, 2560},     {"qwen3-4b k/v_proj", 1024, 2560},
      {"qwen3-4b o_proj", 2560, 4096},     {"qwen3-4b gate/up", 9728, 2560},
      {"qwen3-4b down", 2560, 9728},       {"qwen3-4b lm_head", 151936, 2560},
      {"mistral-7b q/o_proj", 4096, 4096}, {"mistral-7b k/v_proj", 1024, 4096},
      {"mistral-7b gate/up", 14336, 4096}, {"mistral-7b down", 4096, 14336},
      {"mistral-7b lm_head", 32000, 4096},
  };
  if (only_n > 0 && only_k > 0) shapes = {{"custom", only_n, only_k}};
  std::vector<int> token_counts = {1, 2, 4, 8};
  if (only_t > 0) token_counts = {only_t};

  size_t max_w = 0, max_x = 0, max_o = 0;
  for (const Shape& s : shapes) {
    max_w = std::max(max_w, static_cast<size_t>(s.n) * s.k);
    max_x = std::max(max_x, static_cast<size_t>(tpinfer::gpu::kGemvMaxTokens) * s.k);
    max_o = std::max(max_o, static_cast<size_t>(tpinfer::gpu::kGemvMaxTokens) * s.n);
  }
  std::vector<__nv_bfloat16> host(max_w);
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& v : host) v = __float2bfloat16(dist(rng) * 0.05f);
  __nv_bfloat16 *w = nullptr, *x = nullptr, *o_gemv = nullptr, *o_blas = nullptr;
  void* workspace = nullptr;
  const size_t workspace_bytes = 32u << 20;
  GB_CHECK(cudaMalloc(&w, max_w * 2));
  GB_CHECK(cudaMalloc(&x, max_x * 2));
  GB_CHECK(cudaMalloc(&o_gemv, max_o * 2));
  GB_CHECK(cudaMalloc(&o_blas, max_o * 2));
  GB_CHECK(cudaMalloc(&workspace, workspace_bytes));
  GB_CHECK(cudaMemcpy(w, host.data(), max_w * 2, cudaMemcpyHostToDevice));
  GB_CHECK(cudaMemcpy(x, host.data(), max_x * 2, cudaMemcpyHostToDevice));
  cudaStream_t stream;
  GB_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cublasHandle_t blas;
  cublasLtHandle_t lt;
  GB_CUBLAS(cublasCreate(&blas));
  GB_CUBLAS(cublasSetStream(blas, stream));
  GB_CUBLAS(cublasSetWorkspace(blas, workspace, workspace_bytes));
  GB_CUBLAS(cublasLtCreate(&lt));

  // Weights rotate through copies that together exceed the L2 several times, so every timed call
  // streams its matrix from device memory as a decode step does (the model is far larger than L2).
  const size_t pool_elems = std::max(max_w, (size_t{1} << 30) / 2);  // at least 1 GiB of bf16
  __nv_bfloat16* pool = nullptr;
  GB_CHECK(cudaMalloc(&pool, pool_elems * 2));
  for (size_t off = 0; off < pool_elems; off += max_w) {
    GB_CHECK(
        cudaMemcpy(pool + off, w, std::min(max_w, pool_elems - off) * 2, cudaMemcpyDeviceToDevice));
  }
  std::printf(
      "%s, %d iterations (median), weights rotated through %zu MiB; bandwidth = weight "
      "bytes / time; split = warps per row\n",
      prop.name, iters, pool_elems * 2 >> 20);
  std::printf("%-22s %6s %6s %3s %5s | %9s %8s | %9s %8s | %9s %8s | %9s\n", "shape", "N", "K", "T",
              "split", "gemv us", "GB/s", "cublas us", "GB/s", "lt us", "GB/s", "max|diff|");
  const float alpha = 1.0f, beta = 0.0f;
  for (const Shape& s : shapes) {
    for (int t : token_counts) {
      if (t > tpinfer::gpu::kGemvMaxTokens) continue;
      const double wbytes = 2.0 * s.n * s.k;
      const size_t w_elems = static_cast<size_t>(s.n) * s.k;
      const size_t copies = pool_elems / w_elems;
      size_t call = 0;
      __nv_bfloat16* last_w = w;
      auto next_w = [&] { return last_w = pool + (call++ % copies) * w_elems; };
      const float gemv_ms = median_ms(stream, iters, [&] {
        tpinfer::gpu::gemv(o_gemv, false, x, next_w(), t, s.n, s.k, prop.multiProcessorCount,
                           stream);
      });
      GB_CHECK(cudaGetLastError());
      const float blas_ms = median_ms(stream, iters, [&] {
        GB_CUBLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, s.n, t, s.k, &alpha, next_w(),
                               CUDA_R_16BF, s.k, x, CUDA_R_16BF, s.k, &beta, o_blas, CUDA_R_16BF,
                               s.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      LtPlan plan = make_lt_plan(lt, t, s.n, s.k, workspace_bytes);
      float lt_ms = NAN;
      if (plan.ok) {
        lt_ms = median_ms(stream, iters, [&] {
          GB_CUBLAS(cublasLtMatmul(lt, plan.op, &alpha, next_w(), plan.a, x, plan.b, &beta, o_blas,
                                   plan.c, o_blas, plan.c, &plan.algo, workspace, workspace_bytes,
                                   stream));
        });
      }
      destroy(plan);
      // Compare the last cuBLAS(Lt) result with a fresh GEMV result on the same weights.
      tpinfer::gpu::gemv(o_gemv, false, x, last_w, t, s.n, s.k, prop.multiProcessorCount, stream);
      GB_CHECK(cudaStreamSynchronize(stream));
      std::vector<__nv_bfloat16> a(static_cast<size_t>(t) * s.n), b(a.size());
      GB_CHECK(cudaMemcpy(a.data(), o_gemv, a.size() * 2, cudaMemcpyDeviceToHost));
      GB_CHECK(cudaMemcpy(b.data(), o_blas, b.size() * 2, cudaMemcpyDeviceToHost));
      float diff = 0.0f;
      for (size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::fabs(__bfloat162float(a[i]) - __bfloat162float(b[i])));
      }
      std::printf("%-22s %6d %6d %3d %5d | %9.1f %8.1f | %9.1f %8.1f | %9.1f %8.1f | %9.2e\n",
                  s.name, s.n, s.k, t, tpinfer::gpu::gemv_split(s.n, s.k, prop.multiProcessorCount),
                  gemv_ms * 1e3, wbytes / (gemv_ms * 1e-3) / 1e9, blas_ms * 1e3,
                  wbytes / (blas_ms * 1e-3) / 1e9, lt_ms * 1e3, wbytes / (lt_ms * 1e-3) / 1e9,
                  diff);
    }
  }
  GB_CHECK(cudaFree(pool));
  cublasLtDestroy(lt);
  cublasDestroy(blas);
  GB_CHECK(cudaStreamDestroy(stream));
  GB_CHECK(cudaFree(w));
  GB_CHECK(cudaFree(x));
  GB_CHECK(cudaFree(o_gemv));
  GB_CHECK(cudaFree(o_blas));
  GB_CHECK(cudaFree(workspace));
  return 0;
}

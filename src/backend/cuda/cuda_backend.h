// The CUDA backend: one device, one non-blocking stream, a cuBLAS and a cuBLASLt handle with one
// shared workspace. It validates shapes and dtypes, then calls the launchers of kernels/cuda.
// bf16 weights, activations and KV cache; fp32 accumulation, norms, softmax and RoPE.
//
// Private to CUDA-compiled code (backend/cuda, comm/nccl, tests/cuda): it names CUDA types.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <map>
#include <string>
#include <tuple>
#include <unordered_map>

#include "backend/backend.h"

namespace tpinfer {

// How matmul() computes a projection. automatic: the hand-written GEMV for a single token (the
// bandwidth-bound batch-1 decode), cuBLASLt otherwise. Set from TPINFER_CUDA_MATMUL
// (auto | gemv | cublaslt | cublas) or set_matmul_path(); gemv still falls back to cuBLASLt for
// more than gpu::kGemvMaxTokens tokens or unaligned shapes.
enum class CudaMatmulPath { automatic, gemv, cublaslt, cublas };

const char* cuda_matmul_path_name(CudaMatmulPath p);

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& opts);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  BackendKind kind() const override { return BackendKind::cuda; }
  std::string describe() const override;
  DType weight_dtype() const override { return DType::bf16; }
  DType act_dtype() const override { return DType::bf16; }
  DeviceMemory memory() const override;

  void* alloc(size_t bytes) override;
  void free(void* p) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_device(void* dst, const void* src, size_t bytes) override;
  bool host_accessible() const override { return false; }
  bool has_lazy_setup() const override { return true; }
  void upload_weight(Tensor dst, const void* src, DType src_dtype) override;
  // int8 linear weights (cuda_matmul_int8.cpp): matmul() runs the int8 GEMV for them.
  bool supports_int8_weights() const override { return true; }
  void upload_int8_weight(Tensor dst, const int8_t* q, const float* scales) override;
  void synchronize() override;
  size_t allocated_bytes() const override;
  size_t workspace_bytes(const KvLayer& cache_shape, int n_heads) const override;

  bool capture_begin() override;
  void capture_end() override;
  void replay() override;
  void capture_abort() override;
  bool graph_ready() const override { return graph_exec_ != nullptr; }

  void embed(Tensor out, Tensor table, const int32_t* ids, int vocab_offset) override;
  void rmsnorm(Tensor out, Tensor in, Tensor weight, float eps) override;
  void add_rmsnorm(Tensor out, Tensor residual, Tensor delta, Tensor weight, float eps) override;
  void matmul(Tensor out, Tensor in, Tensor weight) override;
  void qk_norm_rope(Tensor q, Tensor k, Tensor q_norm, Tensor k_norm, const BatchView& b,
                    int head_dim, const RopeTable& rope, float eps) override;
  void add_bias(Tensor out, Tensor bias) override;
  void kv_append(const KvLayer& cache, Tensor k, Tensor v, const BatchView& b) override;
  void attention(Tensor out, Tensor q, const KvLayer& cache, const BatchView& b, int n_heads,
                 int sliding_window, float scale) override;
  void silu_mul(Tensor out, Tensor gate, Tensor up) override;
  void silu_mul_fused(Tensor out, Tensor gate_up) override;
  void copy_cols(Tensor out, Tensor in, int64_t first) override;
  void gather_rows(Tensor out, Tensor in, const int32_t* rows) override;
  void convert(Tensor out, Tensor in) override;
  // Mixture of experts (cuda_ops.cpp, kernels/cuda/moe.cu): bf16 experts, per-(token, slot) GEMVs.
  void moe_route(Tensor ids, Tensor weights, Tensor logits, bool normalize) override;
  void moe_experts(Tensor out, Tensor in, const MoeExperts& experts, Tensor ids, Tensor weights,
                   const MoeScratch& scratch) override;

  // --- CUDA-only API (the NCCL communicator, tests, benchmarks) ---------------------------
  cudaStream_t stream() const { return stream_; }
  int device() const { return device_; }
  int sm_count() const { return sm_count_; }
  bool capturing() const { return capturing_; }
  // Greedy sampling on the device: index[r] = vocab_offset + argmax_c logits[r, c] (lowest
  // index on ties), value[r] = the maximum (value may be empty). logits f32 [T, V]; index i32
  // [T, 1]; value f32 [T, 1]. Capturable.
  void argmax(Tensor index, Tensor value, Tensor logits, int vocab_offset);
  void set_matmul_path(CudaMatmulPath p) { matmul_path_ = p; }
  // Off: capture_begin() returns false and the engine runs every step eagerly (as
  // TPINFER_CUDA_GRAPHS=0 does); tests compare the two.
  void set_graphs_enabled(bool on) { graphs_enabled_ = on; }
  CudaMatmulPath matmul_path() const { return matmul_path_; }
  // Which kernel attention() would use for this batch: "prefill" or "decode/<splits>".
  std::string attention_kernel_for(int n_tokens, const KvLayer& cache, int n_heads) const;
  // Drops the captured graph (the NCCL communicator calls this before destroying its comm).
  void release_graph();

 private:
  struct LtPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;  // false: no heuristic result; use cublasGemmEx
  };
  // T, N, K, out dtype, and the alignments (bytes, up to 256) of W, in and out: cuBLASLt's
  // heuristic otherwise assumes 256-byte aligned operands, which row views need not be.
  using LtKey = std::tuple<int64_t, int64_t, int64_t, int, uint32_t, uint32_t, uint32_t>;

  void release_all();
  void require_not_capturing(const char* what) const;
  void* device_alloc(size_t bytes, const char* what);
  LtPlan& lt_plan(const Tensor& out, const Tensor& in, const Tensor& weight);
  void matmul_cublaslt(Tensor out, Tensor in, Tensor weight);
  void matmul_cublas(Tensor out, Tensor in, Tensor weight);
  void matmul_int8(Tensor out, Tensor in, Tensor weight);
  bool use_prefill_kernel(int n_tokens, const KvLayer& cache) const;
  void reserve_decode_workspace(const KvLayer& cache, int n_heads, size_t need);

  int device_ = 0;
  std::string device_name_;
  int cc_major_ = 0, cc_minor_ = 0;
  int sm_count_ = 1;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t cublaslt_ = nullptr;
  void* blas_workspace_ = nullptr;
  size_t blas_workspace_bytes_ = 0;
  std::map<LtKey, LtPlan> lt_plans_;
  CudaMatmulPath matmul_path_ = CudaMatmulPath::automatic;

  // Flash-decoding partials, and the cache shape (n_heads, n_kv_heads, head_dim, max_seq,
  // max_rows) they were last sized for.
  using WorkspaceKey = std::tuple<int, int, int, int, int>;
  float* attn_workspace_ = nullptr;
  size_t attn_workspace_bytes_ = 0;
  WorkspaceKey workspace_key_{-1, -1, -1, -1, -1};

  std::unordered_map<void*, size_t> allocations_;
  size_t allocated_ = 0;

  bool capturing_ = false;
  bool graphs_enabled_ = true;  // TPINFER_CUDA_GRAPHS=0 turns capture off
  cudaGraphExec_t graph_exec_ = nullptr;
};

// The CUDA backend behind a Backend reference, or nullptr when it is another backend.
CudaBackend* as_cuda_backend(Backend& b);

}  // namespace tpinfer

// CudaBackend lifetime, memory, copies, weight upload and CUDA-graph capture. The ops live in
// cuda_ops.cpp and the projections in cuda_matmul.cpp.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_factory.h"
#include "core/error.h"
#include "cuda/kernels.h"

namespace tpinfer {
namespace {

constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;  // cuBLAS's recommendation for Hopper
constexpr int64_t kUploadChunkElems = int64_t{16} << 20;

std::string mib(size_t bytes) {
  std::ostringstream os;
  os.precision(1);
  os << std::fixed << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return os.str();
}

bool is_float_dtype(DType d) {
  return d == DType::f32 || d == DType::f16 || d == DType::bf16;
}

gpu::ElemType elem_type(DType d) {
  switch (d) {
    case DType::f32:
      return gpu::ElemType::f32;
    case DType::f16:
      return gpu::ElemType::f16;
    case DType::bf16:
      return gpu::ElemType::bf16;
    case DType::i32:
    case DType::i8:
      break;
  }
  TPI_FAIL("cuda: " << dtype_name(d) << " is not a floating-point dtype");
}

CudaMatmulPath matmul_path_from_env() {
  const char* v = std::getenv("TPINFER_CUDA_MATMUL");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return CudaMatmulPath::automatic;
  if (std::strcmp(v, "gemv") == 0) return CudaMatmulPath::gemv;
  if (std::strcmp(v, "cublaslt") == 0) return CudaMatmulPath::cublaslt;
  if (std::strcmp(v, "cublas") == 0) return CudaMatmulPath::cublas;
  TPI_FAIL("TPINFER_CUDA_MATMUL='" << v << "' is not one of auto, gemv, cublaslt, cublas");
}

// A staging buffer for upload_weight that is freed however the upload ends.
struct DeviceBuffer {
  void* p = nullptr;
  ~DeviceBuffer() {
    if (p != nullptr) CUDA_WARN(cudaFree(p));
  }
};

}  // namespace

const char* cuda_matmul_path_name(CudaMatmulPath p) {
  switch (p) {
    case CudaMatmulPath::automatic:
      return "auto";
    case CudaMatmulPath::gemv:
      return "gemv";
    case CudaMatmulPath::cublaslt:
      return "cublaslt";
    case CudaMatmulPath::cublas:
      return "cublas";
  }
  return "?";
}

CudaBackend::CudaBackend(const BackendOptions& opts) : device_(opts.device_ordinal) {
  const int n = cuda_visible_device_count();
  if (n == 0) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    TPI_FAIL("backend cuda: no CUDA device is visible ("
             << cuda_unavailable_reason() << "; CUDA_VISIBLE_DEVICES="
             << (visible ? visible : "<unset>") << "); use backend: cpu");
  }
  TPI_CHECK(device_ >= 0 && device_ < n, "backend cuda: device_ordinal " << device_ << " but only "
                                                                         << n << " visible device"
                                                                         << (n == 1 ? "" : "s"));
  matmul_path_ = matmul_path_from_env();
  const char* graphs = std::getenv("TPINFER_CUDA_GRAPHS");
  graphs_enabled_ = graphs == nullptr || std::strcmp(graphs, "0") != 0;
  try {
    CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    device_name_ = prop.name;
    cc_major_ = prop.major;
    cc_minor_ = prop.minor;
    sm_count_ = prop.multiProcessorCount;
    TPI_CHECK(cc_major_ >= 8, "backend cuda: cuda:" << device_ << " (" << device_name_
                                                    << ") has compute capability " << cc_major_
                                                    << "." << cc_minor_
                                                    << "; bf16 tensor cores need 8.0 or newer");
    const cudaError_t init = gpu::attention_prefill_init();
    if (init == cudaErrorNoKernelImageForDevice || init == cudaErrorInvalidDeviceFunction) {
      cudaGetLastError();
      TPI_FAIL("backend cuda: this tpinfer has kernels for CUDA architectures "
               << gpu::built_cuda_architectures() << " but cuda:" << device_ << " (" << device_name_
               << ") is sm_" << cc_major_ << cc_minor_
               << "; rebuild with -DCMAKE_CUDA_ARCHITECTURES=" << cc_major_ << cc_minor_);
    }
    if (init != cudaSuccess) cuda_fail(init, "gpu::attention_prefill_init()", __FILE__, __LINE__);
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&cublas_));
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // An explicit workspace keeps cuBLAS from allocating inside a captured step.
    blas_workspace_ = device_alloc(kBlasWorkspaceBytes, "cuBLAS workspace");
    blas_workspace_bytes_ = kBlasWorkspaceBytes;
    CUBLAS_CHECK(cublasSetWorkspace(cublas_, blas_workspace_, blas_workspace_bytes_));
    CUBLAS_CHECK(cublasLtCreate(&cublaslt_));
  } catch (...) {
    release_all();
    throw;
  }
}

CudaBackend::~CudaBackend() {
  release_all();
}

void CudaBackend::release_all() {
  if (stream_ != nullptr) CUDA_WARN(cudaStreamSynchronize(stream_));
  if (graph_exec_ != nullptr) CUDA_WARN(cudaGraphExecDestroy(graph_exec_));
  graph_exec_ = nullptr;
  for (auto& [key, plan] : lt_plans_) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.op);
  }
  lt_plans_.clear();
  if (cublaslt_ != nullptr) cublasLtDestroy(cublaslt_);
  cublaslt_ = nullptr;
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  cublas_ = nullptr;
  for (auto& [p, bytes] : allocations_) CUDA_WARN(cudaFree(p));
  allocations_.clear();
  allocated_ = 0;
  if (attn_workspace_ != nullptr) CUDA_WARN(cudaFree(attn_workspace_));
  attn_workspace_ = nullptr;
  attn_workspace_bytes_ = 0;
  if (blas_workspace_ != nullptr) CUDA_WARN(cudaFree(blas_workspace_));
  blas_workspace_ = nullptr;
  blas_workspace_bytes_ = 0;
  if (stream_ != nullptr) CUDA_WARN(cudaStreamDestroy(stream_));
  stream_ = nullptr;
}

std::string CudaBackend::describe() const {
  std::ostringstream os;
  os << "cuda:" << device_ << " " << device_name_ << " (sm_" << cc_major_ << cc_minor_ << ", "
     << sm_count_ << " SMs), bf16, matmul " << cuda_matmul_path_name(matmul_path_)
     << (graphs_enabled_ ? ", CUDA graphs" : ", no CUDA graphs");
  return os.str();
}

DeviceMemory CudaBackend::memory() const {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  DeviceMemory m;
  m.total_bytes = total_bytes;
  m.free_bytes = free_bytes;
  return m;
}

void CudaBackend::require_not_capturing(const char* what) const {
  TPI_CHECK(!capturing_, "cuda " << what
                                 << " inside a captured step: a CUDA graph may only hold "
                                    "kernels and collectives (no copies to or from the host, "
                                    "allocation or synchronisation between capture_begin() and "
                                    "capture_end())");
}

void* CudaBackend::device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 256 : bytes);  // a real pointer even for 0
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    TPI_FAIL("cuda:" << device_ << " is out of memory allocating " << mib(bytes) << " for " << what
                     << ": " << mib(free_bytes) << " free of " << mib(total_bytes)
                     << ", this rank's backend holds " << mib(allocated_bytes()) << " ["
                     << cuda_error_context() << "]");
  }
  if (e != cudaSuccess) cuda_fail(e, "cudaMalloc(&p, bytes)", __FILE__, __LINE__);
  return p;
}

void* CudaBackend::alloc(size_t bytes) {
  require_not_capturing("alloc");
  void* p = device_alloc(bytes, "alloc");
  // Zeroed, so a KV cache never holds NaN bit patterns that a masked (0-weighted) read could
  // turn into NaN, and so results do not depend on what the memory held before.
  CUDA_CHECK(cudaMemsetAsync(p, 0, bytes == 0 ? 256 : bytes, stream_));
  allocations_[p] = bytes;
  allocated_ += bytes;
  return p;
}

void CudaBackend::free(void* p) {
  if (p == nullptr) return;
  require_not_capturing("free");
  auto it = allocations_.find(p);
  TPI_CHECK(it != allocations_.end(), "cuda free: " << p << " was not allocated by this backend");
  allocated_ -= it->second;
  allocations_.erase(it);
  CUDA_CHECK(cudaFree(p));
}

size_t CudaBackend::allocated_bytes() const {
  return allocated_ + blas_workspace_bytes_ + attn_workspace_bytes_;
}

// Both copies are ordered after the work already on the stream and complete on return, the
// contract the CPU backend has; the MPI communicator stages through them.
void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  require_not_capturing("copy_to_device");
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  require_not_capturing("copy_to_host");
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::upload_weight(Tensor dst, const void* src, DType src_dtype) {
  require_not_capturing("upload_weight");
  TPI_CHECK(is_float_dtype(dst.dtype) && is_float_dtype(src_dtype),
            "cuda upload_weight: " << dtype_name(src_dtype) << " -> " << dtype_name(dst.dtype)
                                   << " (weights are f32, f16 or bf16)");
  const int64_t n = dst.numel();
  if (n == 0) return;
  TPI_CHECK(dst.data != nullptr && src != nullptr, "cuda upload_weight: null pointer");
  if (src_dtype == dst.dtype) {
    CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.bytes(), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  // Raw chunks to the device, converted there (an f32 checkpoint of 8 GB converts in
  // milliseconds instead of seconds on two host cores).
  const size_t src_size = dtype_size(src_dtype);
  const size_t dst_size = dtype_size(dst.dtype);
  const int64_t chunk = std::min(n, kUploadChunkElems);
  DeviceBuffer staging;
  staging.p = device_alloc(static_cast<size_t>(chunk) * src_size, "weight upload staging");
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t count = std::min(chunk, n - off);
    CUDA_CHECK(cudaMemcpyAsync(staging.p, static_cast<const char*>(src) + off * src_size,
                               static_cast<size_t>(count) * src_size, cudaMemcpyHostToDevice,
                               stream_));
    CUDA_LAUNCH(gpu::convert(static_cast<char*>(dst.data) + off * dst_size, elem_type(dst.dtype),
                             staging.p, elem_type(src_dtype), count, stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::synchronize() {
  require_not_capturing("synchronize");
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// --- CUDA graphs ------------------------------------------------------------------------------
// Thread-local capture mode: only this thread's calls are checked, so NCCL's proxy threads and
// other host threads keep working while the engine enqueues the step.
bool CudaBackend::capture_begin() {
  TPI_CHECK(!capturing_, "cuda capture_begin: a capture is already open");
  if (!graphs_enabled_) return false;
  release_graph();
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
  return true;
}

void CudaBackend::capture_end() {
  TPI_CHECK(capturing_, "cuda capture_end without capture_begin");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  // Fails when an op inside the step was illegal under capture (the error names it).
  CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  const cudaError_t e = cudaGraphInstantiate(&graph_exec_, graph, 0);
  CUDA_WARN(cudaGraphDestroy(graph));
  if (e != cudaSuccess) {
    graph_exec_ = nullptr;
    cuda_fail(e, "cudaGraphInstantiate(&graph_exec_, graph, 0)", __FILE__, __LINE__);
  }
  CUDA_CHECK(cudaGraphUpload(graph_exec_, stream_));  // the first replay is not slower
}

// Ends the capture whatever state it is in (an op may have invalidated it) and drops what was
// captured; the stream is usable again, eagerly or for a new capture.
void CudaBackend::capture_abort() {
  if (!capturing_) return;
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t e = cudaStreamEndCapture(stream_, &graph);
  if (graph != nullptr) CUDA_WARN(cudaGraphDestroy(graph));
  if (e != cudaSuccess) cudaGetLastError();  // the capture's own error, not a sticky one
}

void CudaBackend::replay() {
  TPI_CHECK(graph_exec_ != nullptr,
            "cuda replay: no captured step (capture_end was not reached, or the graph was "
            "dropped because the flash-decoding workspace had to grow for a new KV cache shape)");
  TPI_CHECK(!capturing_, "cuda replay inside a capture");
  CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
}

void CudaBackend::release_graph() {
  if (graph_exec_ == nullptr) return;
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  CUDA_CHECK(cudaGraphExecDestroy(graph_exec_));
  graph_exec_ = nullptr;
}

CudaBackend* as_cuda_backend(Backend& b) {
  return dynamic_cast<CudaBackend*>(&b);
}

// --- factory (cuda_factory.h) -------------------------------------------------------------------
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts) {
  return std::make_unique<CudaBackend>(opts);
}

}  // namespace tpinfer

// Messages of CUDA_CHECK / CUBLAS_CHECK: the failing statement, where, which rank, which device.
#include "backend/cuda/cuda_check.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/error.h"

namespace tpinfer {
namespace {

std::atomic<int> g_rank{-1};

int rank_from_env() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return std::atoi(v);
  }
  return -1;
}

// Paths relative to the repository: "src/backend/cuda/x.cpp" rather than the build machine's.
const char* short_path(const char* file) {
  for (const char* root : {"/src/", "/kernels/"}) {
    if (const char* p = std::strstr(file, root)) return p + 1;
  }
  return file;
}

}  // namespace

void set_cuda_error_rank(int rank) {
  g_rank.store(rank);
}

std::string cuda_error_context() {
  std::ostringstream os;
  const int r = g_rank.load() >= 0 ? g_rank.load() : rank_from_env();
  os << "rank ";
  if (r >= 0) {
    os << r;
  } else {
    os << "?";
  }
  int device = -1;
  if (cudaGetDevice(&device) == cudaSuccess) {
    os << ", cuda:" << device;
  } else {
    cudaGetLastError();
    os << ", cuda:?";
  }
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  os << " (CUDA_VISIBLE_DEVICES=" << (visible != nullptr ? visible : "<unset>") << ")";
  return os.str();
}

void cuda_fail(cudaError_t e, const char* stmt, const char* file, int line) {
  std::ostringstream os;
  os << "CUDA error: " << stmt << " failed: " << cudaGetErrorString(e) << " ("
     << cudaGetErrorName(e) << ") at " << short_path(file) << ":" << line << " ["
     << cuda_error_context() << "]";
  throw Error(os.str());
}

void cublas_fail(cublasStatus_t s, const char* stmt, const char* file, int line) {
  std::ostringstream os;
  os << "cuBLAS error: " << stmt << " failed: " << cublasGetStatusString(s) << " ("
     << cublasGetStatusName(s) << ") at " << short_path(file) << ":" << line << " ["
     << cuda_error_context() << "]";
  throw Error(os.str());
}

void cuda_warn(cudaError_t e, const char* stmt, const char* file, int line) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "warning: CUDA error: %s failed: %s (%s) at %s:%d [%s]\n", stmt,
               cudaGetErrorString(e), cudaGetErrorName(e), short_path(file), line,
               cuda_error_context().c_str());
}

}  // namespace tpinfer

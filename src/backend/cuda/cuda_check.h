// Error tier 2 for CUDA and cuBLAS: CUDA_CHECK / CUBLAS_CHECK throw tpinfer::Error naming the
// statement, file:line, the MPI rank and the device, so the rank that failed says where and on
// which GPU. CUDA_WARN is for destructors (prints, never throws). Only CUDA-compiled code
// (backend/cuda, comm/nccl) includes this header.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

namespace tpinfer {

// "rank 3, cuda:1 (CUDA_VISIBLE_DEVICES=0,1)". The rank is the one set_cuda_error_rank() was
// given, else the launcher's environment (Open MPI, PMIx, PMI, SLURM), else "?".
std::string cuda_error_context();
void set_cuda_error_rank(int rank);

[[noreturn]] void cuda_fail(cudaError_t e, const char* stmt, const char* file, int line);
[[noreturn]] void cublas_fail(cublasStatus_t s, const char* stmt, const char* file, int line);
void cuda_warn(cudaError_t e, const char* stmt, const char* file, int line);

}  // namespace tpinfer

#define CUDA_CHECK(stmt)                                              \
  do {                                                                \
    const cudaError_t tpi_cuda_err_ = (stmt);                         \
    if (tpi_cuda_err_ != cudaSuccess)                                 \
      ::tpinfer::cuda_fail(tpi_cuda_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

// Runs a kernel launcher and checks the launch (configuration errors surface at once; faults
// inside the kernel surface at the next synchronizing call, which names itself).
#define CUDA_LAUNCH(launcher_call)                                             \
  do {                                                                         \
    launcher_call;                                                             \
    const cudaError_t tpi_cuda_err_ = cudaGetLastError();                      \
    if (tpi_cuda_err_ != cudaSuccess)                                          \
      ::tpinfer::cuda_fail(tpi_cuda_err_, #launcher_call, __FILE__, __LINE__); \
  } while (0)

#define CUDA_WARN(stmt) ::tpinfer::cuda_warn((stmt), #stmt, __FILE__, __LINE__)

#define CUBLAS_CHECK(stmt)                                               \
  do {                                                                   \
    const cublasStatus_t tpi_cublas_st_ = (stmt);                        \
    if (tpi_cublas_st_ != CUBLAS_STATUS_SUCCESS)                         \
      ::tpinfer::cublas_fail(tpi_cublas_st_, #stmt, __FILE__, __LINE__); \
  } while (0)

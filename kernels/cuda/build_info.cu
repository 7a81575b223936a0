// What this build of the kernels targets, for error messages on a device it has no code for.
#include "kernels.h"

#ifndef TPINFER_CUDA_ARCHS
#define TPINFER_CUDA_ARCHS "unknown"
#endif

namespace tpinfer::gpu {

const char* built_cuda_architectures() {
  return TPINFER_CUDA_ARCHS;
}

}  // namespace tpinfer::gpu

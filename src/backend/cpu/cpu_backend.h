// The CPU backend: host memory, fp32 activations and KV cache, fp32 weights, OpenMP threads.
// Validates shapes and dtypes, then calls the launchers in kernels/cpu. Its guarded test mode
// (guarded_memory.h) closes its memory to the host outside ops and copies, as a GPU's is.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace tpinfer {

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& opts);

}  // namespace tpinfer

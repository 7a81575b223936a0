// Entry points of the CUDA backend that registry.cpp calls. No CUDA types here: this header is
// included by code that is compiled without nvcc.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace tpinfer {

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts);
// Devices visible to this process; 0 when there is no driver or no GPU (never throws).
int cuda_visible_device_count();

}  // namespace tpinfer

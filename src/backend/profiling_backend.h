// Per-op timers (TPINFER_PROFILE_OPS=1): a Backend that forwards every call to another backend,
// waits for each op to finish (synchronize) and adds its wall time to a table keyed by op,
// shape and whether the op ran on one token (a single-sequence decode step) or more (prefill,
// batched decode). Graph capture is refused (every step runs eagerly, so each op is seen). The
// table goes to stderr when the backend is destroyed. For profiling only: the waits cost time.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace tpinfer {

// Wraps `inner`; `label` prefixes the table (e.g. "rank 0").
std::unique_ptr<Backend> make_profiling_backend(std::unique_ptr<Backend> inner,
                                                const std::string& label);

// Whether TPINFER_PROFILE_OPS=1 asks for it.
bool op_profiling_requested();

}  // namespace tpinfer

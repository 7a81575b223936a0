// The memory calculator: what each rank needs (weights, KV cache, scratch, workspace) before
// anything is allocated, printed at start-up and checked against the budget (mem_frac of the
// device, or of the host's memory shared by the node's ranks on the CPU backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "runtime/engine/engine.h"

namespace tpinfer {

struct MemoryPlan {
  int64_t n_params = 0;         // whole model
  size_t weight_bytes = 0;      // this rank
  size_t kv_bytes = 0;          // this rank
  int kv_blocks = 0;            // blocks in the KV pool (per layer)
  int kv_block_size = 0;        // positions per block
  size_t activation_bytes = 0;  // this rank
  size_t workspace_bytes = 0;   // backend workspace (cuBLAS) and comm staging, estimated
  size_t total_bytes = 0;
  size_t budget_bytes = 0;
  size_t device_total_bytes = 0;
  size_t device_free_bytes = 0;
  double mem_frac = 0.9;
  int ranks_sharing_device = 1;

  std::string report() const;  // multi-line, for stderr
  bool fits() const { return total_bytes <= budget_bytes; }
};

MemoryPlan plan_memory(const ModelConfig& cfg, const ShardDims& dims, const EngineShape& shape,
                       DType weight_dtype, DType act_dtype, size_t device_total, size_t device_free,
                       double mem_frac, int ranks_sharing_device, size_t workspace_bytes);

// Throws tpinfer::Error with the numbers and what to change when the plan does not fit.
void check_memory_plan(const MemoryPlan& plan, const ModelConfig& cfg, const ShardDims& dims,
                       const EngineShape& shape);

std::string format_bytes(size_t bytes);

}  // namespace tpinfer

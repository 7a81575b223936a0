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
  int kv_max_seq = 0;           // the configured context (how many such sequences fit)
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
  // Sequences of max_seq the KV pool holds at once.
  int64_t kv_sequences() const {
    const int64_t per_seq =
        kv_block_size > 0 ? (kv_max_seq + kv_block_size - 1) / kv_block_size : 0;
    return per_seq > 0 ? kv_blocks / per_seq : 0;
  }
};

MemoryPlan plan_memory(const ModelConfig& cfg, const ShardDims& dims, const EngineShape& shape,
                       DType weight_dtype, DType act_dtype, size_t device_total, size_t device_free,
                       double mem_frac, int ranks_sharing_device, size_t workspace_bytes);

// Throws tpinfer::Error with the numbers and what to change when the plan does not fit.
void check_memory_plan(const MemoryPlan& plan, const ModelConfig& cfg, const ShardDims& dims,
                       const EngineShape& shape);

std::string format_bytes(size_t bytes);

// Bytes of one KV block on this rank: K and V of block_size positions in every layer.
size_t kv_block_bytes(const ShardDims& dims, int block_size, DType act_dtype);

// The KV pool's size (EngineShape::n_blocks), in one place. `asked` (kv_cache_blocks) when > 0;
// else, filling the device (a GPU), every block the budget leaves after weights, scratch and
// workspace (vLLM's gpu_memory_utilization); else (the CPU: host memory every rank and process
// shares) the blocks of n_slots sequences of max_seq, fewer when the budget is smaller. Never
// fewer than one sequence of max_seq: check_memory_plan then says what does not fit.
// `probe` is a plan of the same shape with the default pool (n_blocks = 0).
int64_t choose_kv_blocks(const MemoryPlan& probe, const EngineShape& shape, size_t block_bytes,
                         int64_t asked, bool fill_device);

}  // namespace tpinfer

#include "runtime/engine/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "model/sharding.h"

namespace tpinfer {

std::string format_bytes(size_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else if (b >= 1024.0 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  } else if (b >= 1024.0) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  }
  return buf;
}

MemoryPlan plan_memory(const ModelConfig& cfg, const ShardDims& dims, const EngineShape& shape,
                       DType weight_dtype, DType act_dtype, size_t device_total, size_t device_free,
                       double mem_frac, int ranks_sharing_device, size_t workspace_bytes) {
  MemoryPlan p;
  p.n_params = cfg.n_params();
  p.n_active_params = cfg.n_active_params();
  size_t expert_bytes = 0;  // every expert of every sparse layer this rank runs
  ModelWeights probe;
  probe.layers.resize(dims.n_layers);
  probe.stage = dims.stage;  // pipeline stages: this stage's layers, embedding, lm_head
  for (const TensorSpec& spec : sharding_table(cfg)) {
    if (probe.find(spec.name) == nullptr) continue;  // layers left out by `layers`
    const std::vector<int64_t> s = spec.local_shape(dims.tp);
    size_t n = 1;
    for (int64_t d : s) n *= static_cast<size_t>(d);
    size_t bytes = n * dtype_size(s.size() == 1 ? act_dtype : weight_dtype);
    if (s.size() == 2 && shape.int8_group >= 0 && int8_quantized(spec)) {
      // int8: one byte per weight plus f32 scales per row and group (per channel: one per row).
      const int64_t group = shape.int8_group > 0 ? shape.int8_group : s[1];
      bytes = n + sizeof(float) * static_cast<size_t>(s[0] * ((s[1] + group - 1) / group));
    }
    p.weight_bytes += bytes;
    if (spec.name.find(".mlp.experts.") != std::string::npos) expert_bytes += bytes;
  }
  // The RoPE inv_freq table(s), f32 (two for longrope: short and long factors).
  const size_t rope_tables = cfg.rope_scaling.kind == RopeKind::longrope ? 2 : 1;
  p.weight_bytes += rope_tables * static_cast<size_t>(dims.head_dim / 2) * sizeof(float);
  p.active_weight_bytes = p.weight_bytes - expert_bytes;
  if (dims.n_experts > 0) {
    p.active_weight_bytes += expert_bytes / static_cast<size_t>(dims.n_experts) *
                             static_cast<size_t>(dims.experts_per_tok);
  }
  // The KV pool: n_blocks blocks of block_size positions, K and V, every layer.
  p.kv_blocks = shape.pool_blocks();
  p.kv_block_size = shape.block_size;
  p.kv_max_seq = shape.max_seq;
  p.kv_bytes = 2ull * dims.n_layers * static_cast<size_t>(p.kv_blocks) * shape.block_size *
               dims.kv_dim() * dtype_size(act_dtype);
  p.activation_bytes =
      Activations::bytes_needed(dims, act_dtype, shape.max_tokens, shape.max_logit_rows,
                                int64_t{shape.n_slots} * shape.blocks_per_seq());
  p.workspace_bytes = workspace_bytes;
  p.total_bytes = p.weight_bytes + p.kv_bytes + p.activation_bytes + p.workspace_bytes;
  p.device_total_bytes = device_total;
  p.device_free_bytes = device_free;
  p.mem_frac = mem_frac;
  p.ranks_sharing_device = ranks_sharing_device < 1 ? 1 : ranks_sharing_device;
  p.budget_bytes =
      static_cast<size_t>(mem_frac * static_cast<double>(device_total) / p.ranks_sharing_device);
  return p;
}

std::string MemoryPlan::report() const {
  std::ostringstream os;
  char params[32];
  std::snprintf(params, sizeof params, "%.3fB", static_cast<double>(n_params) / 1e9);
  os << "memory plan per rank: params "
     << (n_params >= 100000000 ? params : std::to_string(n_params));
  if (n_active_params != n_params) {
    std::snprintf(params, sizeof params, "%.3fB", static_cast<double>(n_active_params) / 1e9);
    os << " (" << (n_active_params >= 100000000 ? params : std::to_string(n_active_params))
       << " active)";
  }
  os << " | weights " << format_bytes(weight_bytes);
  if (active_weight_bytes != weight_bytes) {
    os << " (" << format_bytes(active_weight_bytes) << " read per decode token)";
  }
  os << " | kv cache " << format_bytes(kv_bytes) << " (" << kv_blocks << " blocks of "
     << kv_block_size << " = " << int64_t{kv_blocks} * kv_block_size
     << " tokens: " << kv_sequences() << " sequence(s) of max_seq " << kv_max_seq << ") | scratch "
     << format_bytes(activation_bytes) << " | workspace " << format_bytes(workspace_bytes)
     << " | total " << format_bytes(total_bytes) << " | budget " << format_bytes(budget_bytes)
     << " (mem_frac " << mem_frac << " of " << format_bytes(device_total_bytes);
  if (ranks_sharing_device > 1) os << " shared by " << ranks_sharing_device << " ranks";
  os << ", " << format_bytes(device_free_bytes) << " free)";
  return os.str();
}

void check_memory_plan(const MemoryPlan& plan, const ModelConfig& cfg, const ShardDims& dims,
                       const EngineShape& shape) {
  if (plan.fits()) return;
  std::ostringstream hint;
  const size_t over = plan.total_bytes - plan.budget_bytes;
  if (dims.pp > 1) {
    hint << "pipeline stage " << dims.pp_rank << " of " << dims.pp << " (layers "
         << dims.stage.layer_begin << "-" << dims.stage.layer_end - 1
         << (dims.stage.embed ? ", the embedding" : "") << (dims.stage.head ? ", the lm_head" : "")
         << ") ";
  }
  hint << "does not fit: each rank needs " << format_bytes(plan.total_bytes) << " (weights "
       << format_bytes(plan.weight_bytes) << ", kv cache " << format_bytes(plan.kv_bytes) << " for "
       << plan.kv_blocks << " blocks of " << shape.block_size
       << " positions: max_seq=" << shape.max_seq << " x " << shape.n_slots << " sequence(s)"
       << ", scratch " << format_bytes(plan.activation_bytes) << ") but the budget is "
       << format_bytes(plan.budget_bytes) << " (mem_frac " << plan.mem_frac << "), "
       << format_bytes(over) << " over; lower max_seq, batch_size or kv_cache_blocks, use more "
       << "ranks (tp" << (dims.pp > 1 ? ", or pp with the layers split again" : "")
       << "), or raise mem_frac";
  const std::vector<int> valid = cfg.valid_tp_sizes();
  if (!valid.empty()) {
    hint << " (valid tp for this model:";
    for (int t : valid) hint << ' ' << t;
    hint << ")";
  }
  throw Error(hint.str());
}

size_t kv_block_bytes(const ShardDims& dims, int block_size, DType act_dtype) {
  return 2ull * dims.n_layers * static_cast<size_t>(block_size) * dims.kv_dim() *
         dtype_size(act_dtype);
}

int64_t choose_kv_blocks(const MemoryPlan& probe, const EngineShape& shape, size_t block_bytes,
                         int64_t asked, bool fill_device) {
  // The pool's size must fit an int (block ids are int32 in the tables).
  constexpr int64_t kMaxBlocks = int64_t{1} << 30;
  TPI_CHECK(asked <= kMaxBlocks,
            "kv_cache_blocks must be at most " << kMaxBlocks << ", found " << asked);
  if (asked > 0) return asked;
  const int64_t one_seq = shape.blocks_per_seq();
  const int64_t reservation = int64_t{shape.n_slots} * one_seq;
  const size_t fixed = probe.total_bytes - probe.kv_bytes;
  const int64_t room = probe.budget_bytes > fixed && block_bytes > 0
                           ? static_cast<int64_t>((probe.budget_bytes - fixed) / block_bytes)
                           : 0;
  if (fill_device) return std::max(one_seq, std::min(room, kMaxBlocks));
  return std::max(one_seq, std::min(reservation, room));
}

}  // namespace tpinfer

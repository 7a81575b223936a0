// The ONE sharding table: which tensors a model has, their global (Hugging Face) shapes, and how
// each is split over tp ranks. scripts/convert_hf.py mirrors it (checked by tests/io), and the
// shard loader checks every dataset's attributes against it.
//
// HF linear weights are [out, in]. Column-parallel q/k/v/gate/up split dim 0 (out), row-parallel
// o/down split dim 1 (in), norms (incl. Qwen3 q_norm/k_norm) are replicated, and embed_tokens /
// lm_head split the vocabulary (dim 0) with rows padded to ceil(V / tp) per rank (zero rows; the
// engine masks padded logits). Tied embeddings store no lm_head. Biases (Qwen2 q/k/v, Llama
// attention_bias / mlp_bias): a column-parallel bias is split with its weight (dim 0); a
// row-parallel bias (o/down) is replicated and added once, after the all-reduce.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace tpinfer {

enum class SplitDim : int { none = -1, out = 0, in = 1 };

struct TensorSpec {
  std::string name;                   // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> global_shape;  // 1-D or 2-D, unpadded
  SplitDim split = SplitDim::none;
  bool vocab_padded = false;  // embed/lm_head: rows padded to ceil(V/tp)
  // This rank's shape; throws when tp does not divide the split dimension (unpadded tensors).
  std::vector<int64_t> local_shape(int tp) const;
  // First global index along the split dimension held by `rank` (0 when replicated).
  int64_t local_offset(int tp, int rank) const;
  // "split dim 1 of global [64, 172] over tp=4" / "replicated, global [64]": for messages.
  std::string describe(int tp) const;
};

// Every tensor of the model, in file order == load order: embed_tokens, then per layer
// input_layernorm, q, k, v, o, (q_norm, k_norm), post_attention_layernorm, gate, up, down (each
// weight followed by its bias when the model has one), then model.norm and (untied only) lm_head.
std::vector<TensorSpec> sharding_table(const ModelConfig& cfg);

// int8 models (scripts/convert_hf.py --dtype int8): which tensors are stored as int8 with
// scales: every 2-D weight except the embedding (a lookup table; a tied lm_head shares it, so a
// tied model's lm_head stays float too). Norms and biases stay float.
bool int8_quantized(const TensorSpec& spec);
// The scales dataset of an int8 weight: "<name>_scales" (f32 [rows, n_groups]).
std::string int8_scales_name(const std::string& weight_name);

// "[64, 172]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace tpinfer

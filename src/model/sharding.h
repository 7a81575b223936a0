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
//
// Fused projections (format version 2): q/k/v are ONE column-parallel tensor
// self_attn.qkv_proj and gate/up ONE tensor mlp.gate_up_proj (weights and biases), so a layer
// runs one matmul per fused projection. Each rank's slice is contiguous and holds its own rows of
// every part, in order: rank r stores [q_r | k_r | v_r] and [gate_r | up_r] (q_r = rows
// [r * q/tp, (r + 1) * q/tp) of HF's q_proj). So the global tensor is NOT HF's [q | k | v]
// concatenation when tp > 1: it is the ranks' slices one after the other.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace tpinfer {

enum class SplitDim : int { none = -1, out = 0, in = 1 };

// One Hugging Face tensor inside a fused one: its name and its global rows.
struct FusedPart {
  std::string name;  // e.g. "model.layers.3.self_attn.k_proj.weight"
  int64_t rows = 0;
};

struct TensorSpec {
  std::string name;                   // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> global_shape;  // 1-D or 2-D, unpadded
  SplitDim split = SplitDim::none;
  bool vocab_padded = false;  // embed/lm_head: rows padded to ceil(V/tp)
  // Fused projections (qkv_proj, gate_up_proj): the HF tensors each rank's slice concatenates
  // (rows [r * rows/tp, (r + 1) * rows/tp) of each, in this order); empty for other tensors.
  std::vector<FusedPart> parts;
  // This rank's shape; throws when tp does not divide the split dimension (unpadded tensors).
  std::vector<int64_t> local_shape(int tp) const;
  // First global index along the split dimension held by `rank` (0 when replicated).
  int64_t local_offset(int tp, int rank) const;
  // "split dim 1 of global [64, 172] over tp=4" / "replicated, global [64]": for messages.
  std::string describe(int tp) const;
  // A fused tensor's parts as ordinary column-parallel specs of their own (HF names and shapes);
  // {*this} for any other tensor.
  std::vector<TensorSpec> unfused() const;
};

// Every tensor of the model, in file order == load order: embed_tokens, then per layer
// input_layernorm, qkv, o, (q_norm, k_norm), post_attention_layernorm, gate_up, down (each
// weight followed by its bias when the model has one), then model.norm and (untied only) lm_head.
// A mixture-of-experts layer (ModelConfig::is_moe_layer) has, in place of gate/up/down, the
// router mlp.gate [n_experts, hidden] (replicated) and per expert e mlp.experts.{e}.gate_proj /
// up_proj [moe_intermediate, hidden] (split dim 0) and down_proj [hidden, moe_intermediate]
// (split dim 1): Qwen3-MoE's names; the converter renames Mixtral's block_sparse_moe w1/w3/w2.
// (Experts are not fused: the MoE kernels read gate and up as two stacked tensors.)
std::vector<TensorSpec> sharding_table(const ModelConfig& cfg);

// An MoE router weight ("model.layers.L.mlp.gate.weight").
bool is_router(const std::string& name);
// int8 models (scripts/convert_hf.py --dtype int8): which tensors are stored as int8 with
// scales: every 2-D weight except the embedding (a lookup table; a tied lm_head shares it, so a
// tied model's lm_head stays float too) and MoE routers (tiny, and a rounded router score can
// change which experts a token gets). Norms and biases stay float. Expert weights are int8.
bool int8_quantized(const TensorSpec& spec);
// The scales dataset of an int8 weight: "<name>_scales" (f32 [rows, n_groups]).
std::string int8_scales_name(const std::string& weight_name);

// "[64, 172]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace tpinfer

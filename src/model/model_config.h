// The model's hyper-parameters, read from a converted model's manifest.json or (for
// --dummy-weights) from a Hugging Face config.json, and the checks that a tp size fits them.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace tpinfer {

enum class Arch { llama, mistral, qwen3, qwen2, phi3, qwen3_moe, mixtral };

const char* arch_name(Arch a);

// RoPE scaling as transformers' ROPE_INIT_FUNCTIONS reads it (modeling_rope_utils.py), after its
// standardize_rope_params(). Values that transformers derives when absent stay unset here (NaN /
// 0) and are derived in src/model/rope.cpp, so the manifest holds what the checkpoint said.
enum class RopeKind { none, linear, dynamic, llama3, yarn, longrope };
const char* rope_kind_name(RopeKind k);

struct RopeScaling {
  RopeKind kind = RopeKind::none;
  double factor = 0.0;                       // all kinds; yarn / longrope: 0 = max_pos / original
  int original_max_position_embeddings = 0;  // llama3, yarn, longrope
  double low_freq_factor = 0.0, high_freq_factor = 0.0;  // llama3
  double attention_factor = 0.0;              // yarn, longrope: 0 = the paper's default from factor
  double beta_fast = 0.0, beta_slow = 0.0;    // yarn: 0 = 32 / 1
  double mscale = 0.0, mscale_all_dim = 0.0;  // yarn: 0 = unset
  bool truncate = true;                       // yarn
  std::vector<double> short_factor, long_factor;  // longrope, head_dim / 2 each
  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  Arch arch = Arch::llama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  bool qk_norm = false;   // Qwen3: RMSNorm over each q/k head before RoPE
  bool qkv_bias = false;  // q/k/v_proj have biases (Qwen2; Llama/Qwen3 attention_bias)
  bool o_bias = false;    // o_proj has a bias (Llama/Qwen3 attention_bias)
  bool mlp_bias = false;  // gate/up/down_proj have biases (Llama mlp_bias)
  RopeScaling rope_scaling;
  int sliding_window = 0;  // Mistral: attend to the last `sliding_window` positions; 0 = off
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;  // every id the configs name as end of sequence

  // Mixture of experts (Qwen3-MoE, Mixtral); n_experts == 0 for dense models. A sparse layer's
  // MLP is a router (gate [n_experts, hidden]) that picks n_experts_per_tok experts per token by
  // softmax in f32 and top-k (renormalised to sum 1 when norm_topk_prob: always for Mixtral),
  // each expert a SwiGLU MLP of width moe_intermediate_size (Mixtral: intermediate_size).
  int n_experts = 0;
  int n_experts_per_tok = 0;
  int moe_intermediate_size = 0;
  bool norm_topk_prob = true;
  // Qwen3-MoE: layer l is sparse when l is not in mlp_only_layers and (l + 1) %
  // decoder_sparse_step == 0; the others are dense MLPs of intermediate_size.
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  bool is_moe() const { return n_experts > 0; }
  bool is_moe_layer(int layer) const;

  // Parses a Hugging Face config.json object (plus generation_config.json, may be null).
  // Refuses architectures, rope_scaling kinds and biases that the engine does not implement.
  static ModelConfig from_hf(const nlohmann::json& config, const nlohmann::json& generation_config,
                             const std::string& source);
  // Parses the "config" object of a tpinfer manifest (written by scripts/convert_hf.py).
  static ModelConfig from_manifest(const nlohmann::json& config, const std::string& source);
  nlohmann::json to_manifest() const;

  // Throws with the list of valid tp values when tp does not divide the heads, kv heads or the
  // MLP width (and, for MoE models, the expert width).
  void check_tp(int tp) const;
  std::vector<int> valid_tp_sizes(int max_tp = 64) const;

  // Vocabulary rows per rank: vocab-parallel embedding and lm_head pad to a multiple of tp.
  int vocab_per_rank(int tp) const { return (vocab_size + tp - 1) / tp; }
  int64_t n_params() const;
  // Parameters one token reads: n_params() with only n_experts_per_tok experts per MoE layer.
  int64_t n_active_params() const;
};

}  // namespace tpinfer

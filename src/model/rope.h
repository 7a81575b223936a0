// RoPE frequencies exactly as transformers computes them (ROPE_INIT_FUNCTIONS in
// modeling_rope_utils.py): inv_freq[i] for the head_dim/2 rotation pairs and the attention factor
// that scales cos and sin. Plain RoPE, linear, dynamic (NTK), llama3, yarn and longrope.
//
// dynamic and longrope depend on the sequence length: transformers' dynamic_rope_update picks
// them per forward from the largest position in it (seq_len = max position + 1); dynamic scales
// the base once seq_len passes max_position_embeddings, longrope switches from short_factor to
// long_factor once it passes original_max_position_embeddings. The model does the same per forward.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace tpinfer {

struct RopeFrequencies {
  std::vector<float> inv_freq;  // head_dim / 2
  float attention_factor = 1.0f;
};

// transformers' rope_init_fn(config, seq_len) after dynamic_rope_update (seq_len = largest
// position of the forward + 1; ignored by the kinds that do not depend on it).
RopeFrequencies rope_frequencies(const ModelConfig& cfg, int64_t seq_len);

// Whether the frequencies depend on seq_len (dynamic, longrope).
bool rope_depends_on_length(const ModelConfig& cfg);

// For a kind that depends on seq_len: the smallest key that identifies its frequencies (dynamic:
// max(seq_len, max_position_embeddings); longrope: 0 short, 1 long), so a forward re-uploads
// them only when the key changes.
int64_t rope_length_key(const ModelConfig& cfg, int64_t seq_len);

}  // namespace tpinfer

// Pipeline parallelism: which layers (and which of the embedding, final norm and lm_head) each
// stage of a replica holds. The converter (scripts/convert_hf.py, stage_split / stage_holds) and
// the engine decide alike: stage s runs layers [first_layer(s), first_layer(s) + layers[s]),
// the embedding lives on the first stage, the final norm and lm_head on the last (and with tied
// embeddings the embedding too, as the lm_head).
#pragma once

#include <climits>
#include <string>
#include <vector>

namespace tpinfer {

struct StageSplit {
  std::vector<int> layers;  // layers per stage, in order; sum = the model's layers

  int pp() const { return static_cast<int>(layers.size()); }
  int first_layer(int stage) const;
  std::string describe() const;  // "10,10,8,8"

  // Balanced by layer count: every stage gets n / pp layers, the first n % pp one more (the
  // last stage also carries the lm_head). Throws when pp < 1 or pp > n_layers.
  static StageSplit balanced(int n_layers, int pp);
  // Checks an explicit split (--pp-layers): pp entries, each >= 1, summing to n_layers.
  static StageSplit from_list(const std::vector<int>& layers, int n_layers,
                              const std::string& where);
};

// What one stage holds. The default (one stage) holds everything.
struct StageRange {
  int layer_begin = 0, layer_end = INT_MAX;  // global layer indices [begin, end)
  bool embed = true;                         // model.embed_tokens.weight
  bool head = true;                          // model.norm.weight, lm_head.weight

  static StageRange of(const StageSplit& split, int stage, bool tie_word_embeddings);
  // Whether the tensor of the sharding table named `hf_name` belongs to this stage.
  bool holds(const std::string& hf_name) const;
};

}  // namespace tpinfer

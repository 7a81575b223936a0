#include "model/pipeline_stages.h"

#include <cstdlib>
#include <numeric>
#include <sstream>

#include "core/error.h"

namespace tpinfer {

int StageSplit::first_layer(int stage) const {
  return std::accumulate(layers.begin(), layers.begin() + stage, 0);
}

std::string StageSplit::describe() const {
  std::ostringstream os;
  for (size_t i = 0; i < layers.size(); ++i) os << (i ? "," : "") << layers[i];
  return os.str();
}

StageSplit StageSplit::balanced(int n_layers, int pp) {
  TPI_CHECK(pp >= 1, "pp=" << pp << ": the pipeline-parallel size must be >= 1");
  TPI_CHECK(pp <= n_layers, "pp=" << pp << " is more pipeline stages than the model's " << n_layers
                                  << " layers (every stage runs at least one layer); "
                                  << "use pp <= " << n_layers);
  StageSplit s;
  for (int i = 0; i < pp; ++i) s.layers.push_back(n_layers / pp + (i < n_layers % pp ? 1 : 0));
  return s;
}

StageSplit StageSplit::from_list(const std::vector<int>& layers, int n_layers,
                                 const std::string& where) {
  TPI_CHECK(!layers.empty(), where << ": the layer split is empty");
  int sum = 0;
  for (int n : layers) {
    TPI_CHECK(n >= 1, where << ": every stage needs at least one layer, found " << n);
    sum += n;
  }
  StageSplit s{layers};
  TPI_CHECK(sum == n_layers, where << ": the split " << s.describe() << " covers " << sum
                                   << " layers, the model has " << n_layers);
  return s;
}

StageRange StageRange::of(const StageSplit& split, int stage, bool tie_word_embeddings) {
  TPI_CHECK(stage >= 0 && stage < split.pp(),
            "stage " << stage << " outside the " << split.pp() << " pipeline stages");
  StageRange r;
  r.layer_begin = split.first_layer(stage);
  r.layer_end = r.layer_begin + split.layers[static_cast<size_t>(stage)];
  const bool last = stage == split.pp() - 1;
  r.embed = stage == 0 || (last && tie_word_embeddings);
  r.head = last;
  return r;
}

bool StageRange::holds(const std::string& name) const {
  if (name == "model.embed_tokens.weight") return embed;
  if (name == "model.norm.weight" || name == "lm_head.weight") return head;
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return true;
  const int layer = std::atoi(name.c_str() + prefix.size());
  return layer >= layer_begin && layer < layer_end;
}

}  // namespace tpinfer

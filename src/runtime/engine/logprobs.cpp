#include "runtime/engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/error.h"

namespace tpinfer {

TokenLogprob token_logprobs(const float* logits, int n_vocab, int32_t chosen, int top_n) {
  TPI_CHECK(n_vocab > 0 && chosen >= 0 && chosen < n_vocab,
            "logprobs: token " << chosen << " outside the vocabulary of " << n_vocab);
  TPI_CHECK(top_n >= 0 && top_n <= kMaxTopLogprobs,
            "logprobs: top_logprobs " << top_n << " outside [0, " << kMaxTopLogprobs << "]");
  float mx = logits[0];
  for (int i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0.0;  // in double: a 150k-term sum of values <= 1
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  auto logprob = [&](int32_t id) { return static_cast<float>(logits[id] - lse); };

  TokenLogprob out;
  out.id = chosen;
  out.logprob = logprob(chosen);
  if (top_n == 0) return out;
  // The n best so far, kept sorted best first (n <= 20: insertion beats a heap).
  auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::vector<int32_t> best;
  best.reserve(static_cast<size_t>(top_n) + 1);
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (static_cast<int>(best.size()) == top_n && !better(i, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
    if (static_cast<int>(best.size()) > top_n) best.pop_back();
  }
  out.top.reserve(best.size());
  for (int32_t id : best) out.top.emplace_back(id, logprob(id));
  return out;
}

}  // namespace tpinfer

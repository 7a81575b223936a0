#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace tpinfer {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

int32_t argmax(const float* logits, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

Sampler::Sampler(int vocab_size, const SamplingParams& params)
    : vocab_(vocab_size), params_(params), rng_(params.seed) {
  TPI_CHECK(params.temperature >= 0.0f, "temperature must be >= 0, found " << params.temperature);
  TPI_CHECK(params.top_k >= 0, "top_k must be >= 0, found " << params.top_k);
  TPI_CHECK(params.top_p > 0.0f && params.top_p <= 1.0f,
            "top_p must be in (0, 1], found " << params.top_p);
  idx_.resize(vocab_size);
  prob_.resize(vocab_size);
}

int32_t Sampler::sample(const float* logits) {
  if (params_.temperature <= 0.0f) return argmax(logits, vocab_);
  // Candidates: all ids, or the top_k largest logits (ties broken by lower id).
  std::iota(idx_.begin(), idx_.end(), 0);
  int n = vocab_;
  auto by_logit = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  if (params_.top_k > 0 && params_.top_k < vocab_) {
    n = params_.top_k;
    std::partial_sort(idx_.begin(), idx_.begin() + n, idx_.end(), by_logit);
  } else if (params_.top_p < 1.0f) {
    std::sort(idx_.begin(), idx_.end(), by_logit);
  }
  // Softmax over the candidates at the temperature, in double for a stable sum.
  const float inv_t = 1.0f / params_.temperature;
  float max_logit = logits[idx_[0]];
  for (int i = 1; i < n; ++i) max_logit = std::max(max_logit, logits[idx_[i]]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    prob_[i] = std::exp((logits[idx_[i]] - max_logit) * inv_t);
    sum += prob_[i];
  }
  // Nucleus: the smallest prefix (by probability) whose mass reaches top_p. Candidates are
  // sorted whenever top_p < 1.
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    int keep = n;
    for (int i = 0; i < n; ++i) {
      cum += prob_[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0.0;
    for (int i = 0; i < n; ++i) sum += prob_[i];
  }
  const double r = rng_.uniform() * sum;
  double cum = 0.0;
  for (int i = 0; i < n; ++i) {
    cum += prob_[i];
    if (r < cum) return idx_[i];
  }
  return idx_[n - 1];
}

}  // namespace tpinfer

#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
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
uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}
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

void Rng::get_state(uint64_t out[4]) const {
  std::copy(s_, s_ + 4, out);
}

void Rng::set_state(const uint64_t in[4]) {
  std::copy(in, in + 4, s_);
}

double Rng::uniform() {
  return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
}

int32_t argmax(const float* logits, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

void check_logits(const float* logits, int n) {
  bool any_finite = false;
  for (int i = 0; i < n; ++i) {
    const float x = logits[i];
    if (std::isnan(x) || x == std::numeric_limits<float>::infinity()) {
      int n_bad = 0;
      for (int k = i; k < n; ++k) {
        n_bad += std::isnan(logits[k]) || logits[k] == std::numeric_limits<float>::infinity();
      }
      TPI_FAIL("non-finite logits: " << (std::isnan(x) ? "NaN" : "+Inf") << " at token id " << i
                                     << " (" << n_bad << " of " << n
                                     << " ids non-finite); the weights or the activations hold "
                                        "NaN/Inf (a corrupt or overflowing model), so no token "
                                        "can be chosen");
    }
    any_finite |= x != -std::numeric_limits<float>::infinity();
  }
  TPI_CHECK(any_finite, "non-finite logits: all " << n << " ids are -Inf, so no token can be "
                                                  << "chosen");
}

Sampler::Sampler(int vocab_size, const SamplingParams& params)
    : vocab_(vocab_size), rng_(params.seed) {
  TPI_CHECK(vocab_size > 0, "sampler: vocab_size must be > 0, found " << vocab_size);
  set_params(params);
  idx_.resize(vocab_size);
  prob_.resize(vocab_size);
}

void Sampler::set_params(const SamplingParams& params) {
  TPI_CHECK(params.temperature >= 0.0f && std::isfinite(params.temperature),
            "temperature must be >= 0 and finite, found " << params.temperature);
  TPI_CHECK(params.top_k >= 0, "top_k must be >= 0, found " << params.top_k);
  TPI_CHECK(params.top_p > 0.0f && params.top_p <= 1.0f,
            "top_p must be in (0, 1], found " << params.top_p);
  params_ = params;
}

int32_t Sampler::sample(const float* logits) {
  // NaN makes every comparison below false (an invalid sort order, a NaN sum): refuse it here,
  // so what follows sees only finite values and -Inf (a masked id).
  check_logits(logits, vocab_);
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
  // Softmax over the candidates at the temperature, in double for a stable sum. The best logit
  // gets weight 1 exactly (a tiny temperature would otherwise make 0 * Inf = NaN of it).
  const float inv_t = 1.0f / params_.temperature;
  float max_logit = logits[idx_[0]];
  for (int i = 1; i < n; ++i) max_logit = std::max(max_logit, logits[idx_[i]]);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    const float z = logits[idx_[i]] - max_logit;
    prob_[i] = z == 0.0f ? 1.0f : std::exp(z * inv_t);
    sum += prob_[i];
  }
  TPI_CHECK(std::isfinite(sum) && sum >= 1.0,
            "sampler: the softmax sum is " << sum << " (expected >= 1); logits are unusable");
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
  int last_positive = -1;
  for (int i = 0; i < n; ++i) {
    if (prob_[i] <= 0.0f) continue;  // an id with no mass is never drawn
    last_positive = i;
    cum += prob_[i];
    if (r < cum) return idx_[i];
  }
  // Only when r rounds up to the sum: the last candidate that has any mass.
  TPI_CHECK(last_positive >= 0, "sampler: no candidate has any probability");
  return idx_[last_positive];
}

}  // namespace tpinfer

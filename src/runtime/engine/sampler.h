// Token selection on the sampling rank: greedy at temperature 0, otherwise temperature, then
// top-k, then top-p (nucleus) over the softmax, drawn from a seeded generator so that a run is
// reproducible. Scratch is sized once for the vocabulary: no allocation per token. Logits with
// NaN or +Inf are refused (check_logits) before any comparison, so a broken model fails loudly.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace tpinfer {

struct SamplingParams {
  SamplingParams() = default;
  // The sampler's own four (the processors' fields keep their neutral defaults).
  SamplingParams(float temperature_, int top_k_, float top_p_, uint64_t seed_)
      : temperature(temperature_), top_k(top_k_), top_p(top_p_), seed(seed_) {}

  float temperature = 0.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
  // Applied before the sampler by logit processors (runtime/engine/logit_processors.h), not by
  // the Sampler itself.
  float min_p = 0.0f;               // 0 = off; keep ids with p >= min_p * p_max (after temperature)
  float presence_penalty = 0.0f;    // OpenAI: -= p for each id generated at least once
  float frequency_penalty = 0.0f;   // OpenAI: -= f * (times the id was generated)
  float repetition_penalty = 1.0f;  // transformers: ids in prompt + generated, / or * by r
  std::vector<std::pair<int32_t, float>> logit_bias;  // id -> bias added, in [-100, 100]
};

// xoshiro256** seeded by splitmix64: the same sequence on every platform and compiler.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1), 53 bits
  // The whole state: a generator set to another's state draws what that one would draw next.
  void get_state(uint64_t out[4]) const;
  void set_state(const uint64_t in[4]);

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  // Candidates are ids [0, vocab_size); a logits row may be longer (a vocabulary padded past the
  // tokenizer: those ids are masked, never picked, greedy or sampled).
  Sampler(int vocab_size, const SamplingParams& params);
  int32_t sample(const float* logits);  // throws tpinfer::Error on non-finite logits
  const SamplingParams& params() const { return params_; }
  // The generator, for drawing on another rank: that rank's sampler takes these params and this
  // state (set_params, rng().set_state), samples the same row, and hands back its state.
  Rng& rng() { return rng_; }
  // The sampler's own four fields of params (validated as by the constructor); keeps the
  // generator and the scratch.
  void set_params(const SamplingParams& params);

 private:
  int vocab_;
  SamplingParams params_;
  Rng rng_;
  std::vector<int32_t> idx_;
  std::vector<float> prob_;
};

int32_t argmax(const float* logits, int n);

// Throws tpinfer::Error naming the first NaN or +Inf logit (and how many there are), or when every
// logit is -Inf: no token can be chosen from such a row. -Inf alone is a masked id and allowed.
void check_logits(const float* logits, int n);

}  // namespace tpinfer

// The logit processors a request's sampling fields ask for, and the one factory that builds them
// (make_logit_processors): repetition / frequency / presence penalties, logit bias and min_p.
// Semantics, each as its reference writes it:
//   repetition_penalty r (transformers' RepetitionPenaltyLogitsProcessor, vLLM): every id in the
//     prompt or generated so far: logit > 0 ? logit / r : logit * r.
//   frequency_penalty f, presence_penalty p (OpenAI, as vLLM applies them, after repetition): every
//     id generated c > 0 times (the prompt does not count): logit -= f * c + p.
//   logit_bias (OpenAI): logit += bias[id], bias in [-100, 100].
//   min_p m (transformers' MinPLogitsWarper after TemperatureLogitsWarper, vLLM): ids whose
//     probability at the request's temperature is below m * the most likely one's are masked
//     (-inf); at temperature 0 (greedy) it changes nothing.
// State is sized once per request (counts over the vocabulary, the ids seen): nothing is
// allocated per token.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/engine/logit_processor.h"
#include "runtime/scheduler/request.h"

namespace tpinfer {

using LogitProcessors = std::vector<std::unique_ptr<LogitProcessor>>;

class PenaltyProcessor : public LogitProcessor {
 public:
  // prompt: the request's prompt ids (repetition_penalty counts them); ids outside [0, vocab)
  // are ignored. max_new_tokens: reserves room for the ids to come.
  PenaltyProcessor(const std::vector<int32_t>& prompt, int vocab, int max_new_tokens,
                   float repetition, float frequency, float presence);
  void apply(float* logits, int vocab) override;
  void accept(int32_t token) override;
  std::unique_ptr<LogitProcessor> clone() const override;

 private:
  float repetition_, frequency_, presence_;
  std::vector<int32_t> generated_count_;  // (vocab) times each id was generated
  std::vector<uint8_t> seen_;             // (vocab) in the prompt or generated
  std::vector<int32_t> seen_ids_;         // distinct ids of seen_, in order of first sight
  std::vector<int32_t> generated_ids_;    // distinct generated ids
};

class LogitBiasProcessor : public LogitProcessor {
 public:
  // bias: (id, value) pairs, ids in [0, vocab) (checked by the front end), values clipped here
  // to [-100, 100].
  explicit LogitBiasProcessor(std::vector<std::pair<int32_t, float>> bias);
  void apply(float* logits, int vocab) override;
  void accept(int32_t) override {}
  std::unique_ptr<LogitProcessor> clone() const override;

 private:
  std::vector<std::pair<int32_t, float>> bias_;
};

class MinPProcessor : public LogitProcessor {
 public:
  MinPProcessor(float min_p, float temperature);
  void apply(float* logits, int vocab) override;
  void accept(int32_t) override {}
  std::unique_ptr<LogitProcessor> clone() const override;

 private:
  float min_p_, temperature_;
};

// The processors of one request, in the order they apply: penalties, logit bias, then the
// request's constraint (a grammar's mask: scheduler/grammar_constraint.h builds it, null for
// none) and min_p last, so that min_p is relative to the most likely id still allowed. Empty
// when the request asks for none (the common case: the scheduler then samples from the engine's
// row as is). vocab: the sampleable ids.
LogitProcessors make_logit_processors(const GenerationRequest& request, int vocab,
                                      std::unique_ptr<LogitProcessor> constraint = nullptr);

}  // namespace tpinfer

// The seam for everything that changes a request's next-token distribution before sampling:
// presence/frequency/repetition penalties, logit bias, min_p-style masks, a grammar's token mask
// (structured output, constrained tool calls). Each request owns its processors; the replica
// leader applies them in one pass over its logits row, in the order they were added, after the
// row's log-probabilities are taken (logprobs report the model's own distribution, as vLLM's
// default does) and before the sampler picks a token.
#pragma once

#include <cstdint>
#include <memory>

namespace tpinfer {

class LogitProcessor {
 public:
  virtual ~LogitProcessor() = default;
  // logits: f32 [vocab] for this request's next token, changed in place (-inf masks an id).
  virtual void apply(float* logits, int vocab) = 0;
  // The token that was chosen from the processed row: advance the state (counts, automaton).
  virtual void accept(int32_t token) = 0;
  // True once the processor allows nothing but the end of the sequence (a complete grammar):
  // the scheduler then ends the request with finish_reason "stop".
  virtual bool finished() const { return false; }
  // An independent copy with the same state (n > 1: each choice continues on its own).
  virtual std::unique_ptr<LogitProcessor> clone() const = 0;
};

}  // namespace tpinfer

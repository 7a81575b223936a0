// Log-probabilities of a generated token from one logits row: log_softmax over the sampleable
// vocabulary (the raw logits, before temperature, top-k or top-p), the chosen id's value and the
// n most likely ids. One pass for the maximum and the normaliser, one for the top n: no
// allocation beyond the result and no sort of the vocabulary.
#pragma once

#include <cstdint>

#include "runtime/scheduler/request.h"

namespace tpinfer {

// logits: [n_vocab] (finite, as check_logits enforces before sampling); top_n in [0, 20]. Ties
// in the top n go to the lower id.
TokenLogprob token_logprobs(const float* logits, int n_vocab, int32_t chosen, int top_n);

}  // namespace tpinfer

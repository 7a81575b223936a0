// What makes a request acceptable, in one place for every front end (a single prompt, a batch
// input line, later a server request): its size before tokenizing, its numeric fields, and its
// length in tokens against the model's positions and the KV cache. A failed check belongs to
// the request: the caller refuses that request alone (a batch line) or the job (a single prompt).
// Messages name the field, what was expected and what was found, without a "where" prefix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "config/run_config.h"
#include "model/model_config.h"
#include "runtime/engine/sampler.h"
#include "runtime/scheduler/request.h"

namespace tpinfer {

// The most new tokens a request may ask for: far beyond any model's positions, and small enough
// that prompt + max_new_tokens never overflows an int.
constexpr int64_t kMaxNewTokensCap = int64_t{1} << 24;

struct RequestLimits {
  int64_t max_request_bytes = 4 << 20;  // prompt text (or input line) size
  int max_position_embeddings = 0;      // the model's; 0 = unknown
  bool allow_long_context = false;      // accept beyond max_position_embeddings, with a warning
  int max_seq = 0;                      // the KV cache length asked for; 0 = sized per request
};

// The limits a run's configuration and model set.
RequestLimits request_limits(const RunConfig& cfg, const ModelConfig& model);

// Before tokenizing (and before parsing a JSON line): `what` names the text, e.g. "the prompt".
void check_request_bytes(size_t bytes, const std::string& what, const RequestLimits& limits);

// max_new_tokens in [0, kMaxNewTokensCap]; temperature finite and >= 0; top_k >= 0; top_p in
// (0, 1]; min_p in [0, 1]; presence/frequency_penalty in [-2, 2]; repetition_penalty > 0; logit
// bias values in [-100, 100]. Throws naming the field.
void check_request_params(int64_t max_new_tokens, const SamplingParams& sampling);

// The token ids a request names, against the sampleable vocabulary: prompt_ids (a prompt given as
// ids), stop_token_ids and logit_bias keys. Throws naming the field and the first bad id.
void check_request_ids(const GenerationRequest& request, int vocab);

// A run's configured sampling values (the keys temperature ... logit_bias), the defaults of
// every request of the CLI and the batch files.
SamplingParams sampling_from_config(const RunConfig& cfg);

// After tokenizing: a non-empty prompt whose prompt + max_new_tokens fits max_seq (when given) and
// the model's positions (unless allow_long_context). Returns a warning to log ("" if none).
std::string check_request_tokens(int64_t n_prompt, int64_t max_new_tokens,
                                 const RequestLimits& limits);

}  // namespace tpinfer

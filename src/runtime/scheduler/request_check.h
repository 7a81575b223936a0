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
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "runtime/scheduler/request.h"

namespace tpinfer {

// The most new tokens a request may ask for: far beyond any model's positions, and small enough
// that prompt + max_new_tokens never overflows an int.
constexpr int64_t kMaxNewTokensCap = int64_t{1} << 24;

// The paged KV cache of one replica, as far as a request's size goes.
struct KvLimits {
  int block_size = 0;  // positions per block; 0 = not known yet (no check)
  int64_t n_blocks = 0;
  int max_running = 0;  // batch_size: rows for running sequences (a request's n choices)
};

// The limits of an engine's shape.
KvLimits kv_limits(const EngineShape& shape);

struct RequestLimits {
  int64_t max_request_bytes = 4 << 20;  // prompt text (or input line) size
  int max_position_embeddings = 0;      // the model's; 0 = unknown
  bool allow_long_context = false;      // accept beyond max_position_embeddings, with a warning
  int max_seq = 0;                      // the KV cache length asked for; 0 = sized per request
  KvLimits kv;                          // set once the engine is sized (else no pool check)
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

// After tokenizing: a non-empty prompt whose prompt + max_new_tokens fits max_seq (when given),
// the model's positions (unless allow_long_context) and, once the engine is sized, the KV pool
// (check_request_kv with n = 1). Returns a warning to log ("" if none).
std::string check_request_tokens(int64_t n_prompt, int64_t max_new_tokens,
                                 const RequestLimits& limits);

// A request's n choices run together on one replica: n <= max_running (batch_size). Throws
// naming both (no pool, block_size 0: nothing to check).
void check_request_choices(int64_t n, const KvLimits& kv);

// The pool rule, in one place (front ends refuse up front; the scheduler refuses what reaches it
// anyway): n choices of prompt + max_new_tokens must run to the end together in an empty pool
// (the prompt's full blocks shared, the rest per choice), and n <= max_running. Throws with the
// numbers and what to change. No check while kv.block_size is 0.
void check_request_kv(int64_t n_prompt, int64_t max_new_tokens, int64_t n, const KvLimits& kv);

// Blocks that n choices of prompt + max_new_tokens hold at their longest.
int64_t kv_blocks_needed(int64_t n_prompt, int64_t max_new_tokens, int64_t n, int block_size);

}  // namespace tpinfer

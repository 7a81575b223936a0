// The decode loop of one sequence over a tensor-parallel group. The group's leader (tp rank 0)
// holds the prompt, samples and decides when to stop; every step it broadcasts the next token
// (or the stop) so the other ranks run the same forward. Prefill runs in chunks of the engine's
// max_tokens; each decode step is one token at the next position of the pre-allocated KV cache.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/world.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"

namespace tpinfer {

struct GenerateOptions {
  int max_new_tokens = 256;
  std::vector<int32_t> stop_ids;  // any of these ends the sequence (not emitted)
  int slot = 0;
};

struct GenerationResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated;
  std::string finish_reason;      // "stop" | "length" | "error"
  std::string error;              // why the request failed (finish_reason "error"), on every rank
  double prefill_ms = 0.0;        // prompt forward(s) until the first logits
  double ttft_ms = 0.0;           // prompt forward(s) + first sample
  std::vector<double> decode_ms;  // per generated token after the first
};

// Leader: prompt_ids is the prompt and sampler/on_token are used; followers pass empty/null.
// on_token(id) is called on the leader for each generated token, in order, as soon as it is known.
// A failure that belongs to the request (non-finite logits, an id the tokenizer cannot decode in
// on_token) ends it on every rank of the group with finish_reason "error" and res.error set;
// a failure of the engine or a collective still throws.
GenerationResult generate(Engine& engine, World& world, bool leader,
                          const std::vector<int32_t>& prompt_ids, const GenerateOptions& opts,
                          Sampler* sampler, const std::function<void(int32_t)>& on_token);

}  // namespace tpinfer

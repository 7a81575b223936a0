// One generation request as every front end (CLI prompt, batch file, server) hands it to the
// scheduler, what streams back while it runs, and how it ends. The scheduler sees only these
// types: how a request was written (a YAML key, a JSONL line, an OpenAI body) stays in its front
// end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

// The most top_logprobs a request may ask for (OpenAI's limit).
constexpr int kMaxTopLogprobs = 20;

// The most choices (n) a request may ask for.
constexpr int kMaxChoices = 128;

// max_new_tokens of a request that gave no limit (an OpenAI body without max_tokens): as many as
// fit in max_seq after the prompt. The job replaces it before the scheduler sees the request.
constexpr int kMaxNewTokensAsFit = -1;

// Log-probabilities of one generated token, from the full (unscaled) logits: log_softmax over the
// sampleable vocabulary, before temperature, top-k or top-p, as transformers' log_softmax of the
// model's logits gives them.
struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // the top_logprobs most likely ids, best first
};

struct GenerationRequest {
  // The prompt: text, or a chat rendered with the model's chat template.
  std::string prompt;
  std::vector<ChatMessage> messages;  // non-empty: a chat (prompt is then unused)
  bool chat = false;                  // render `prompt` as one user turn with the chat template
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings: the text ends before the first match
  std::vector<int32_t> stop_token_ids;  // more ids that end the request (not in the output)
  bool ignore_eos = false;              // keep going past end-of-sequence ids
  // -1: no logprobs; 0..kMaxTopLogprobs: the sampled token's logprob and this many alternatives.
  int logprobs = -1;
  // -1: none; 0..kMaxTopLogprobs: the logprob of every prompt token after the first (scoring, as
  // `echo` with `logprobs` asks), from the full-vocabulary log_softmax, and this many
  // alternatives. max_new_tokens may then be 0 (score without generating).
  int prompt_logprobs = -1;
  bool stream = false;  // deltas are sent while the request runs (else only the outcome)
  // Choices: n sequences continue the same prompt (prefilled once, its KV blocks shared), choice
  // i sampling with choice_seed(sampling.seed, i). Each choice streams and ends on its own.
  int n = 1;
  // Structured output: the JSON Schema the completion must validate against (its JSON text;
  // "" = free text). response_format and constrained tool calls set it; the replica leader
  // compiles it into a grammar processor (scheduler/grammar_constraint.h).
  std::string response_schema;
  // Chat only: the tools offered to the model (an OpenAI `tools` array as JSON text, "" = none),
  // passed to the chat template.
  std::string tools_json;
  // Keep special tokens in the text (a tool-call marker such as Mistral's [TOOL_CALLS] is one).
  bool keep_special_text = false;

  std::vector<int32_t> prompt_ids;  // filled by tokenization (rank 0), before the scheduler
};

// What a running request has produced since its last delta (streaming requests only).
struct GenerationDelta {
  int index = 0;                       // the choice (0 .. n-1)
  std::string text;                    // new text; bytes of an unfinished character wait
  std::vector<int32_t> token_ids;      // ids generated since the last delta
  std::vector<TokenLogprob> logprobs;  // one per id when logprobs >= 0
};

// How a request ended. For a streaming request, text/token_ids/logprobs still hold the whole
// completion (the deltas concatenated), so a front end can use either.
struct GenerationOutcome {
  int index = 0;  // the choice (0 .. n-1); a request with n choices ends with n outcomes
  std::string text;
  std::string finish_reason;  // "stop" | "length" | "error" | "cancelled"
  std::string error;          // why ("error" only)
  int prompt_tokens = 0;
  std::vector<int32_t> token_ids;  // generated ids (a stop id is not included)
  std::vector<TokenLogprob> logprobs;
  // prompt_logprobs >= 0 only: the prompt's ids, and one entry per prompt id after the first
  // (prompt_logprobs[k] scores prompt_ids[k + 1]; the first token has no logprob).
  std::vector<int32_t> prompt_ids;
  std::vector<TokenLogprob> prompt_logprobs;
  double queue_ms = 0.0;          // submitted until a slot took it
  double prefill_ms = 0.0;        // slot taken until the prompt's forward(s) ended
  double ttft_ms = 0.0;           // slot taken until the first token
  double total_ms = 0.0;          // slot taken until finished
  std::vector<double> decode_ms;  // per generated token after the first (the CLI's metrics)
  int replica = 0;
};

// The seed of choice i of a request: choice 0 keeps the request's seed (n = 1 is unchanged),
// the others get a splitmix64 step of it, so every choice is reproducible and they differ.
inline uint64_t choice_seed(uint64_t seed, int index) {
  if (index == 0) return seed;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One replica's paged KV cache: the pool now, and counters since the job started.
struct KvCacheStats {
  int64_t blocks_total = 0;         // blocks in the pool
  int64_t blocks_used = 0;          // held by running sequences
  int64_t blocks_cached = 0;        // free, still holding a reusable prefix (evicted LRU first)
  int64_t prefix_query_tokens = 0;  // prompt tokens looked up in the prefix cache
  int64_t prefix_hit_tokens = 0;    // of those, found cached (not prefilled again)
  int64_t preemptions = 0;          // sequences preempted when the pool ran out
};

}  // namespace tpinfer

namespace tpinfer {

// A request on its way through the scheduler: `seq` is unique within the job (rank 0 assigns
// it) and is what events, cancels and results name.
struct ScheduledRequest {
  uint64_t seq = 0;
  GenerationRequest request;
  std::chrono::steady_clock::time_point queued = std::chrono::steady_clock::now();
};

// Where a replica's scheduler reports what its requests produce. Called on the replica leader's
// main thread, in order: deltas of a request, then its one outcome.
class RequestEvents {
 public:
  virtual ~RequestEvents() = default;
  virtual void on_delta(uint64_t seq, GenerationDelta delta) = 0;
  virtual void on_finish(uint64_t seq, GenerationOutcome outcome) = 0;
};

}  // namespace tpinfer

// Request validation (see request_check.h).
#include "runtime/scheduler/request_check.h"

#include <cmath>
#include <sstream>

#include "core/error.h"

namespace tpinfer {

RequestLimits request_limits(const RunConfig& cfg, const ModelConfig& model) {
  RequestLimits l;
  l.max_request_bytes = cfg.max_request_bytes;
  l.max_position_embeddings = model.max_position_embeddings;
  l.allow_long_context = cfg.allow_long_context;
  l.max_seq = cfg.max_seq;
  return l;
}

void check_request_bytes(size_t bytes, const std::string& what, const RequestLimits& limits) {
  TPI_CHECK(static_cast<int64_t>(bytes) <= limits.max_request_bytes,
            what << " is " << bytes
                 << " bytes, larger than max_request_bytes=" << limits.max_request_bytes
                 << " (refused before tokenizing); shorten it or raise max_request_bytes");
}

void check_request_params(int64_t max_new_tokens, const SamplingParams& s) {
  TPI_CHECK(max_new_tokens >= 0 && max_new_tokens <= kMaxNewTokensCap,
            "max_new_tokens must be in [0, " << kMaxNewTokensCap << "], found " << max_new_tokens);
  TPI_CHECK(std::isfinite(s.temperature) && s.temperature >= 0.0f,
            "temperature must be a finite number >= 0, found " << s.temperature);
  TPI_CHECK(s.top_k >= 0, "top_k must be >= 0, found " << s.top_k);
  TPI_CHECK(s.top_p > 0.0f && s.top_p <= 1.0f, "top_p must be in (0, 1], found " << s.top_p);
  TPI_CHECK(s.min_p >= 0.0f && s.min_p <= 1.0f, "min_p must be in [0, 1], found " << s.min_p);
  TPI_CHECK(s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f,
            "presence_penalty must be in [-2, 2], found " << s.presence_penalty);
  TPI_CHECK(s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f,
            "frequency_penalty must be in [-2, 2], found " << s.frequency_penalty);
  TPI_CHECK(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0.0f,
            "repetition_penalty must be a finite number > 0, found " << s.repetition_penalty);
  for (const auto& [id, bias] : s.logit_bias) {
    TPI_CHECK(std::isfinite(bias) && bias >= -100.0f && bias <= 100.0f,
              "logit_bias of token " << id << " must be in [-100, 100], found " << bias);
  }
}

void check_request_ids(const GenerationRequest& r, int vocab) {
  auto check = [vocab](const char* field, int32_t id) {
    TPI_CHECK(id >= 0 && id < vocab,
              field << ": token id " << id << " is outside the vocabulary [0, " << vocab << ")");
  };
  for (int32_t id : r.prompt_ids) check("prompt", id);
  for (int32_t id : r.stop_token_ids) check("stop_token_ids", id);
  for (const auto& [id, bias] : r.sampling.logit_bias) check("logit_bias", id);
}

SamplingParams sampling_from_config(const RunConfig& cfg) {
  SamplingParams s;
  s.temperature = cfg.temperature;
  s.top_k = cfg.top_k;
  s.top_p = cfg.top_p;
  s.seed = cfg.seed;
  s.min_p = cfg.min_p;
  s.presence_penalty = cfg.presence_penalty;
  s.frequency_penalty = cfg.frequency_penalty;
  s.repetition_penalty = cfg.repetition_penalty;
  s.logit_bias = parse_logit_bias_key(cfg.logit_bias);
  return s;
}

KvLimits kv_limits(const EngineShape& shape) {
  KvLimits k;
  k.block_size = shape.block_size;
  k.n_blocks = shape.pool_blocks();
  k.max_running = shape.n_slots;
  return k;
}

int64_t kv_blocks_needed(int64_t n_prompt, int64_t max_new_tokens, int64_t n, int block_size) {
  const int64_t bs = block_size, shared = n_prompt / bs;
  const int64_t whole = (n_prompt + max_new_tokens + bs - 1) / bs;
  return shared + n * (whole - shared);
}

void check_request_choices(int64_t n, const KvLimits& kv) {
  if (kv.block_size <= 0) return;
  TPI_CHECK(n <= kv.max_running, "n (" << n << " choices) exceeds batch_size=" << kv.max_running
                                       << " (the sequences a replica runs at once); lower n or "
                                          "raise batch_size");
}

void check_request_kv(int64_t n_prompt, int64_t max_new_tokens, int64_t n, const KvLimits& kv) {
  if (kv.block_size <= 0) return;
  check_request_choices(n, kv);
  const int64_t needed = kv_blocks_needed(n_prompt, max_new_tokens, n, kv.block_size);
  if (needed <= kv.n_blocks) return;
  std::ostringstream os;
  os << "prompt (" << n_prompt << " tokens) + max_new_tokens (" << max_new_tokens << ")";
  if (n > 1) os << " for n=" << n << " choices";
  os << " needs " << needed << " KV cache blocks of " << kv.block_size
     << " tokens, but the pool holds " << kv.n_blocks << " (" << kv.n_blocks * kv.block_size
     << " tokens); lower max_new_tokens";
  if (n > 1) os << " or n";
  os << ", or raise kv_cache_blocks (or mem_frac on a GPU)";
  throw Error(os.str());
}

std::string check_request_tokens(int64_t n_prompt, int64_t max_new_tokens,
                                 const RequestLimits& limits) {
  TPI_CHECK(n_prompt > 0,
            "the prompt is empty after tokenization (this tokenizer adds no BOS): "
            "give a prompt");
  const int64_t needed = n_prompt + max_new_tokens;  // both < 2^31: no overflow in int64
  TPI_CHECK(limits.max_seq <= 0 || needed <= limits.max_seq,
            "prompt (" << n_prompt << " tokens) + max_new_tokens (" << max_new_tokens
                       << ") = " << needed << " exceeds max_seq=" << limits.max_seq
                       << "; raise max_seq or lower max_new_tokens");
  check_request_kv(n_prompt, max_new_tokens, 1, limits.kv);
  const int64_t positions = limits.max_position_embeddings;
  if (positions <= 0 || needed <= positions) return "";
  TPI_CHECK(limits.allow_long_context,
            "prompt (" << n_prompt << " tokens) + max_new_tokens (" << max_new_tokens << ") = "
                       << needed << " exceeds the model's max_position_embeddings=" << positions
                       << "; shorten the prompt, lower max_new_tokens, or set "
                          "allow_long_context: true to run beyond the trained context");
  return "prompt + max_new_tokens = " + std::to_string(needed) +
         " exceeds the model's max_position_embeddings=" + std::to_string(positions) +
         " (allow_long_context: true; output past the trained context may degrade)";
}

}  // namespace tpinfer

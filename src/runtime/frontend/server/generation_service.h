// What the HTTP server needs from the rest of the job, and nothing more: submit a request, read
// its events, cancel it, and a few facts for /v1/models and /metrics. The server never sees MPI,
// the scheduler or the tokenizer; tests drive it with a fake service.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/scheduler/request.h"
#include "runtime/structured/tool_calls.h"

namespace tpinfer {

// A request refused before it runs, with the HTTP status it answers: 400 (a bad value, a prompt
// that cannot fit max_seq; `param` names the field), 429 (the queue is full), 503 (shutting
// down).
class RequestRefused : public std::runtime_error {
 public:
  RequestRefused(int status, const std::string& message, std::string param = "",
                 std::string code = "")
      : std::runtime_error(message),
        status(status),
        param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string param;  // the request field at fault ("" = none)
  std::string code;   // OpenAI's error code, e.g. "context_length_exceeded" ("" = none)
};

// The events of one request, from the job's thread to the HTTP thread serving it: deltas (for a
// streaming request) and one outcome per choice (n in all), each choice's deltas before its
// outcome. Thread-safe.
class RequestChannel {
 public:
  explicit RequestChannel(int n = 1) : ended_(static_cast<size_t>(n < 1 ? 1 : n), false) {}
  int n() const { return static_cast<int>(ended_.size()); }
  void push(GenerationDelta d) {
    std::lock_guard<std::mutex> lock(mu_);
    deltas_.push_back(std::move(d));
    cv_.notify_all();
  }
  void finish(GenerationOutcome o) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t i = static_cast<size_t>(o.index);
    if (i >= ended_.size() || ended_[i]) return;  // the first outcome wins (a cancel racing)
    ended_[i] = true;
    outcomes_.push_back(std::move(o));
    cv_.notify_all();
  }
  // delta: a delta (into d). done: a choice's outcome (into o); n of them end the request.
  enum class Next { delta, done, timeout };
  // Waits up to `wait` for the next event: deltas first, then outcomes.
  Next next(GenerationDelta& d, GenerationOutcome& o, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, wait, [&] { return !deltas_.empty() || !outcomes_.empty(); });
    if (!deltas_.empty()) {
      d = std::move(deltas_.front());
      deltas_.pop_front();
      return Next::delta;
    }
    if (!outcomes_.empty()) {
      o = std::move(outcomes_.front());
      outcomes_.pop_front();
      return Next::done;
    }
    return Next::timeout;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationDelta> deltas_;
  std::deque<GenerationOutcome> outcomes_;
  std::vector<bool> ended_;  // per choice: its outcome came
};

class GenerationService {
 public:
  virtual ~GenerationService() = default;

  struct Submitted {
    uint64_t id = 0;
    std::shared_ptr<RequestChannel> channel;
  };
  // Tokenizes and checks the request on the calling thread, then queues it. Throws
  // RequestRefused (400, 429, 503) when it cannot run; never blocks on the model.
  virtual Submitted submit(GenerationRequest request) = 0;
  // The client went away: the request (every choice) stops at its next step and frees its slot;
  // its channel gets finish_reason "cancelled". Unknown or finished ids are ignored.
  virtual void cancel(uint64_t id) = 0;

  // The token's text as its bytes (may be part of a UTF-8 character), for logprobs.
  virtual std::string token_text(int32_t id) const = 0;
  virtual std::string model_name() const = 0;
  virtual int max_seq() const = 0;           // positions per request (prompt + completion)
  virtual int64_t created_unix() const = 0;  // when the model was loaded (for /v1/models)
  // How the model writes tool calls (from its chat template).
  virtual structured::ToolCallFormat tool_call_format() const {
    return structured::ToolCallFormat::hermes;
  }

  // The tokenizer endpoints (/tokenize, /detokenize, /tokenizer_info, as vLLM shapes them).
  // Throw RequestRefused (400 for bad input; 501 by default: a service without a tokenizer).
  virtual std::vector<int32_t> tokenize(const std::string& text, bool add_special) const {
    (void)text, (void)add_special;
    throw RequestRefused(501, "this server has no tokenizer");
  }
  virtual std::vector<int32_t> tokenize_chat(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt) const {
    (void)messages, (void)add_generation_prompt;
    throw RequestRefused(501, "this server has no tokenizer");
  }
  virtual std::string detokenize(const std::vector<int32_t>& ids) const {
    (void)ids;
    throw RequestRefused(501, "this server has no tokenizer");
  }
  struct TokenizerInfo {
    std::string bos_token, eos_token;  // "" = none
    std::vector<int32_t> eos_token_ids;
    int bos_token_id = -1;      // -1 = none
    std::string chat_template;  // "" = none
    int vocab_size = 0;
    int model_max_length = 0;  // positions per request (prompt + completion)
  };
  virtual TokenizerInfo tokenizer_info() const {
    throw RequestRefused(501, "this server has no tokenizer");
  }

  struct Load {
    int queued = 0;   // waiting for a slot
    int running = 0;  // in a slot
    int slots = 0;    // slots over all replicas
  };
  virtual Load load() const = 0;
  // The replicas' KV cache counters, summed (all zero where there is no block pool).
  virtual KvCacheStats kv_stats() const { return {}; }
};

}  // namespace tpinfer

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
// streaming request), then exactly one outcome. Thread-safe.
class RequestChannel {
 public:
  void push(GenerationDelta d) {
    std::lock_guard<std::mutex> lock(mu_);
    deltas_.push_back(std::move(d));
    cv_.notify_all();
  }
  void finish(GenerationOutcome o) {
    std::lock_guard<std::mutex> lock(mu_);
    if (outcome_) return;  // the first outcome wins (a cancel racing a finish)
    outcome_ = std::move(o);
    cv_.notify_all();
  }
  enum class Next { delta, done, timeout };
  // Waits up to `wait` for the next event: a delta (into d) before the outcome (into o).
  Next next(GenerationDelta& d, GenerationOutcome& o, std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, wait, [&] { return !deltas_.empty() || outcome_.has_value(); });
    if (!deltas_.empty()) {
      d = std::move(deltas_.front());
      deltas_.pop_front();
      return Next::delta;
    }
    if (outcome_) {
      o = *outcome_;
      return Next::done;
    }
    return Next::timeout;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationDelta> deltas_;
  std::optional<GenerationOutcome> outcome_;
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
  // The client went away: the request stops at its next step and frees its slot; its channel
  // gets finish_reason "cancelled". Unknown or finished ids are ignored.
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

  struct Load {
    int queued = 0;   // waiting for a slot
    int running = 0;  // in a slot
    int slots = 0;    // slots over all replicas
  };
  virtual Load load() const = 0;
};

}  // namespace tpinfer

// The GenerationService the HTTP server talks to, on world rank 0: submit() tokenizes and checks
// a request on the HTTP thread (a bad one is refused with its status before it takes any
// place), then queues it for the dispatcher; the dispatcher's events reach the request's
// channel. Thread-safe: HTTP threads submit and cancel, the job's main thread delivers events.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "config/run_config.h"
#include "model/model_config.h"
#include "runtime/frontend/openai/protocol.h"
#include "runtime/frontend/server/generation_service.h"
#include "runtime/scheduler/dispatcher.h"
#include "runtime/scheduler/request_check.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

class QueueService : public GenerationService, public RequestEvents {
 public:
  // max_seq: the engine's positions per slot; slots: over all replicas.
  QueueService(RequestQueue& queue, const Tokenizer& tokenizer, const RunConfig& cfg,
               const ModelConfig& model, int max_seq, int slots, std::string model_name);

  Submitted submit(GenerationRequest request) override;
  void cancel(uint64_t id) override;
  std::string token_text(int32_t id) const override;
  std::string model_name() const override { return model_name_; }
  int max_seq() const override { return max_seq_; }
  int64_t created_unix() const override { return created_; }
  structured::ToolCallFormat tool_call_format() const override {
    return structured::tool_call_format_for_template(tokenizer_.chat_template_text());
  }
  Load load() const override;
  KvCacheStats kv_stats() const override;
  // Where the dispatcher leaves the replicas' KV cache counters (DispatchOptions::kv_stats).
  void set_kv_board(const KvStatsBoard* board) { kv_board_ = board; }
  // The engine's KV pool: requests that cannot fit it are refused up front (400).
  void set_kv_limits(const KvLimits& kv) { limits_.kv = kv; }
  std::vector<int32_t> tokenize(const std::string& text, bool add_special) const override;
  std::vector<int32_t> tokenize_chat(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const override;
  std::string detokenize(const std::vector<int32_t>& ids) const override;
  TokenizerInfo tokenizer_info() const override;

  // From the dispatcher (the job's main thread).
  void on_delta(uint64_t seq, GenerationDelta delta) override;
  void on_finish(uint64_t seq, GenerationOutcome outcome) override;

 private:
  // The channel of request seq; `erase`: one choice ended (the last one forgets the channel).
  std::shared_ptr<RequestChannel> channel(uint64_t seq, bool erase);

  RequestQueue& queue_;
  const Tokenizer& tokenizer_;
  const RunConfig& cfg_;
  RequestLimits limits_;
  int max_seq_, slots_;
  openai::TokenText token_text_;
  std::string model_name_;
  int64_t created_;
  TokenizerInfo tokenizer_info_;
  mutable std::mutex mu_;
  struct Open {
    std::shared_ptr<RequestChannel> channel;
    int choices_left = 1;
  };
  std::unordered_map<uint64_t, Open> channels_;
  const KvStatsBoard* kv_board_ = nullptr;
};

// The model id clients name: served_model_name, or the model directory's last component.
std::string served_model_name(const RunConfig& cfg);

}  // namespace tpinfer

#include "runtime/frontend/queue_service.h"

#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "runtime/frontend/token_text.h"
#include "runtime/job_setup.h"

namespace tpinfer {

std::string served_model_name(const RunConfig& cfg) {
  if (!cfg.served_model_name.empty()) return cfg.served_model_name;
  std::filesystem::path p(cfg.model);
  if (!p.has_filename()) p = p.parent_path();  // "models/qwen3/" names qwen3
  const std::string name = p.filename().string();
  return name.empty() ? std::string("tpinfer") : name;
}

QueueService::QueueService(RequestQueue& queue, const Tokenizer& tokenizer, const RunConfig& cfg,
                           const ModelConfig& model, int max_seq, int slots, std::string model_name)
    : queue_(queue),
      tokenizer_(tokenizer),
      cfg_(cfg),
      limits_(request_limits(cfg, model)),
      max_seq_(max_seq),
      slots_(slots),
      model_name_(std::move(model_name)),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()) {
  limits_.max_seq = max_seq;  // the engine's, whatever the config said
  token_text_ = token_text_of(tokenizer_);
  TokenizerInfo& t = tokenizer_info_;
  if (const std::optional<int32_t> bos = tokenizer_.bos_id()) {
    t.bos_token_id = *bos;
    t.bos_token = tokenizer_.id_to_token(*bos);
  }
  t.eos_token_ids = tokenizer_.eos_ids();
  if (!t.eos_token_ids.empty()) t.eos_token = tokenizer_.id_to_token(t.eos_token_ids[0]);
  t.chat_template = tokenizer_.chat_template_text();
  t.vocab_size = tokenizer_.vocab_size();
  t.model_max_length = max_seq;
}

std::vector<int32_t> QueueService::tokenize(const std::string& text, bool add_special) const {
  try {
    check_request_bytes(text.size(), "the prompt", limits_);
    return tokenizer_.encode(text, add_special);
  } catch (const std::exception& e) {
    throw RequestRefused(400, e.what(), "prompt");
  }
}

std::vector<int32_t> QueueService::tokenize_chat(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt) const {
  try {
    std::vector<ChatMessage> msgs;
    if (!cfg_.system.empty()) msgs.push_back({"system", cfg_.system});
    msgs.insert(msgs.end(), messages.begin(), messages.end());
    return tokenizer_.encode(
        tokenizer_.apply_chat_template(msgs, add_generation_prompt, cfg_.enable_thinking), false);
  } catch (const std::exception& e) {
    throw RequestRefused(400, e.what(), "messages");
  }
}

std::string QueueService::detokenize(const std::vector<int32_t>& ids) const {
  try {
    GenerationRequest r;
    r.prompt_ids = ids;
    check_request_ids(r, tokenizer_.vocab_size());
    return tokenizer_.decode(ids);
  } catch (const std::exception& e) {
    throw RequestRefused(400, e.what(), "tokens");
  }
}

GenerationService::TokenizerInfo QueueService::tokenizer_info() const {
  return tokenizer_info_;
}

GenerationService::Submitted QueueService::submit(GenerationRequest r) {
  const char* prompt_field = r.messages.empty() ? "prompt" : "messages";
  try {
    check_request_params(r.max_new_tokens < 0 ? 0 : r.max_new_tokens, r.sampling);
  } catch (const std::exception& e) {
    throw RequestRefused(400, e.what());
  }
  try {
    check_request_choices(std::max(1, r.n), limits_.kv);
  } catch (const std::exception& e) {
    throw RequestRefused(400, e.what(), "n");
  }
  try {  // a prompt of token ids, stop_token_ids, logit_bias: ids the model has
    check_request_ids(r, tokenizer_.vocab_size());
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw RequestRefused(400, what, what.substr(0, what.find(':')));
  }
  if (r.prompt_ids.empty()) {
    try {
      check_request_bytes(r.prompt.size(), "the prompt", limits_);
      r.prompt_ids = tokenize_prompt(tokenizer_, r.prompt, r.chat || !r.messages.empty(),
                                     r.messages, cfg_.system, cfg_.enable_thinking, r.tools_json);
    } catch (const std::exception& e) {
      throw RequestRefused(400, e.what(), prompt_field);
    }
  }
  const int n_prompt = static_cast<int>(r.prompt_ids.size());
  if (r.max_new_tokens <
      0) {  // "as many as fit": the rest of the slot, within the model's positions
    int room = max_seq_ - n_prompt;
    if (limits_.max_position_embeddings > 0 && !limits_.allow_long_context) {
      room = std::min(room, limits_.max_position_embeddings - n_prompt);
    }
    if (limits_.kv.block_size > 0) {  // and what the KV pool holds for one sequence
      room = static_cast<int>(
          std::min<int64_t>(room, limits_.kv.n_blocks * limits_.kv.block_size - n_prompt));
    }
    r.max_new_tokens = std::max(room, 0);
    if (r.max_new_tokens == 0) {
      throw RequestRefused(400,
                           "the prompt is " + std::to_string(n_prompt) +
                               " tokens: it leaves no room to generate in this server's " +
                               std::to_string(max_seq_) + " positions per request",
                           prompt_field, "context_length_exceeded");
    }
  }
  try {
    check_request_tokens(n_prompt, r.max_new_tokens, limits_);
    check_request_kv(n_prompt, r.max_new_tokens, std::max(1, r.n), limits_.kv);
  } catch (const std::exception& e) {
    throw RequestRefused(400, e.what(), prompt_field, "context_length_exceeded");
  }

  Submitted out;
  out.id = queue_.new_seq();
  out.channel = std::make_shared<RequestChannel>(r.n);
  {  // the channel first: the dispatcher may deliver events as soon as the request is queued
    std::lock_guard<std::mutex> lock(mu_);
    channels_[out.id] = Open{out.channel, std::max(1, r.n)};
  }
  const RequestQueue::Push pushed = queue_.push(ScheduledRequest{out.id, std::move(r)});
  if (pushed != RequestQueue::Push::ok) {
    channel(out.id, true);
    if (pushed == RequestQueue::Push::full) {
      throw RequestRefused(429,
                           "the server's queue is full (max_queue=" +
                               std::to_string(cfg_.max_queue) + " requests waiting); retry later",
                           "", "queue_full");
    }
    throw RequestRefused(503, "the server is shutting down");
  }
  return out;
}

void QueueService::cancel(uint64_t id) {
  queue_.cancel(id);
}

std::string QueueService::token_text(int32_t id) const {
  return token_text_(id);
}

GenerationService::Load QueueService::load() const {
  Load l;
  l.queued = static_cast<int>(queue_.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    l.running = std::max(0, static_cast<int>(channels_.size()) - l.queued);
  }
  l.slots = slots_;
  return l;
}

std::shared_ptr<RequestChannel> QueueService::channel(uint64_t seq, bool erase) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = channels_.find(seq);
  if (it == channels_.end()) return nullptr;
  std::shared_ptr<RequestChannel> c = it->second.channel;
  if (erase && --it->second.choices_left == 0) channels_.erase(it);
  return c;
}

KvCacheStats QueueService::kv_stats() const {
  return kv_board_ ? kv_board_->total() : KvCacheStats{};
}

void QueueService::on_delta(uint64_t seq, GenerationDelta delta) {
  if (std::shared_ptr<RequestChannel> c = channel(seq, false)) c->push(std::move(delta));
}

void QueueService::on_finish(uint64_t seq, GenerationOutcome outcome) {
  if (std::shared_ptr<RequestChannel> c = channel(seq, true)) c->finish(std::move(outcome));
}

}  // namespace tpinfer

// A GenerationService for the server tests, without a model: the completion of a prompt is its
// words, one token per word ("w " each), produced by a thread per request with a small delay.
// Honours max_new_tokens, logprobs, n (identical choices), streaming and cancel; refuses with 429
// past max_running; a prompt containing "__fail__" ends with finish_reason "error" after its first
// token.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/frontend/server/generation_service.h"

namespace tpinfer::testing {

class FakeService : public GenerationService {
 public:
  explicit FakeService(std::chrono::milliseconds delay = std::chrono::milliseconds(5),
                       int max_running = 1000)
      : delay_(delay), max_running_(max_running) {}

  ~FakeService() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      for (auto& [id, flag] : cancel_flags_) *flag = true;
    }
    for (auto& t : threads_) t.join();
  }

  Submitted submit(GenerationRequest r) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ >= max_running_) {
      throw RequestRefused(429, "the queue is full (" + std::to_string(running_) +
                                    " requests waiting); retry later");
    }
    std::string text = r.prompt;
    for (const ChatMessage& m : r.messages) text += (text.empty() ? "" : " ") + m.content;
    std::vector<int32_t> ids;
    std::istringstream words(text);
    std::string w;
    while (words >> w) {
      auto it = vocab_.find(w + " ");
      if (it == vocab_.end()) {
        it = vocab_.emplace(w + " ", static_cast<int32_t>(vocab_.size() + 1)).first;
        texts_[it->second] = it->first;
      }
      ids.push_back(it->second);
    }
    Submitted s;
    s.id = ++next_id_;
    s.channel = std::make_shared<RequestChannel>(r.n);
    auto flag = std::make_shared<std::atomic<bool>>(false);
    cancel_flags_[s.id] = flag;
    ++running_;
    ++submitted_;
    const bool fail = text.find("__fail__") != std::string::npos;
    threads_.emplace_back([this, r, ids, s, flag, fail] { run(r, ids, s, *flag, fail); });
    return s;
  }

  void cancel(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cancel_flags_.find(id);
    if (it != cancel_flags_.end()) *it->second = true;
  }

  std::string token_text(int32_t id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = texts_.find(id);
    return it == texts_.end() ? "<" + std::to_string(id) + ">" : it->second;
  }
  std::string model_name() const override { return "fake-model"; }
  int max_seq() const override { return 2048; }
  int64_t created_unix() const override { return 1700000000; }
  Load load() const override {
    std::lock_guard<std::mutex> lock(mu_);
    Load l;
    l.running = running_;
    l.slots = max_running_;
    return l;
  }

  // Waits (bounded) until `n` requests were cancelled; returns how many were.
  int wait_cancelled(int n, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, limit, [&] { return static_cast<int>(cancelled_.size()) >= n; });
    return static_cast<int>(cancelled_.size());
  }
  // Waits (bounded) until `n` requests are running.
  bool wait_running(int n, std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (load().running >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // Fixed counters, so /metrics has KV cache values to show.
  KvCacheStats kv_stats() const override {
    KvCacheStats k;
    k.blocks_total = 64;
    k.blocks_used = 10;
    k.blocks_cached = 5;
    k.prefix_query_tokens = 1000;
    k.prefix_hit_tokens = 750;
    k.preemptions = 2;
    return k;
  }
  int submitted() const {
    std::lock_guard<std::mutex> lock(mu_);
    return submitted_;
  }

 private:
  // Every choice (r.n of them) produces the same words, token by token, the choices'
  // deltas interleaved as a scheduler's steps would produce them.
  void run(const GenerationRequest& r, const std::vector<int32_t>& ids, const Submitted& s,
           const std::atomic<bool>& cancelled, bool fail) {
    const size_t n_choices = static_cast<size_t>(std::max(1, r.n));
    std::vector<GenerationOutcome> outs(n_choices);
    const size_t n = r.max_new_tokens < 0
                         ? ids.size()
                         : std::min(ids.size(), static_cast<size_t>(r.max_new_tokens));
    for (size_t c = 0; c < n_choices; ++c) {
      outs[c].index = static_cast<int>(c);
      outs[c].prompt_tokens = static_cast<int>(ids.size());
      outs[c].finish_reason = n < ids.size() ? "length" : "stop";
    }
    bool stop = false;
    for (size_t i = 0; i < n && !stop; ++i) {
      std::this_thread::sleep_for(delay_);
      if (cancelled) {
        for (GenerationOutcome& o : outs) o.finish_reason = "cancelled";
        break;
      }
      for (GenerationOutcome& o : outs) {
        GenerationDelta d;
        d.index = o.index;
        d.text = token_text(ids[i]);
        d.token_ids = {ids[i]};
        if (r.logprobs >= 0) {
          TokenLogprob lp;
          lp.id = ids[i];
          lp.logprob = -0.5f;
          for (int k = 0; k < r.logprobs; ++k) lp.top.push_back({ids[i] + 1000 * k, -0.5f - k});
          d.logprobs.push_back(lp);
          o.logprobs.push_back(lp);
        }
        o.text += d.text;
        o.token_ids.push_back(ids[i]);
        if (r.stream) s.channel->push(d);
        if (fail) {
          o.finish_reason = "error";
          o.error = "the fake model failed on purpose";
          stop = true;
        }
      }
    }
    if (outs[0].finish_reason == "cancelled") {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_.insert(s.id);
      cv_.notify_all();
    }
    for (GenerationOutcome& o : outs) {
      o.ttft_ms = 1.0;
      o.decode_ms.assign(o.token_ids.empty() ? 0 : o.token_ids.size() - 1, 1.0);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
    }
    for (GenerationOutcome& o : outs) s.channel->finish(o);
  }

  std::chrono::milliseconds delay_;
  int max_running_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int32_t> vocab_;
  std::map<int32_t, std::string> texts_;
  std::map<uint64_t, std::shared_ptr<std::atomic<bool>>> cancel_flags_;
  std::set<uint64_t> cancelled_;
  std::vector<std::thread> threads_;
  uint64_t next_id_ = 0;
  int running_ = 0;
  int submitted_ = 0;
  bool closing_ = false;
};

}  // namespace tpinfer::testing

#include "runtime/engine/logit_processors.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tpinfer {

PenaltyProcessor::PenaltyProcessor(const std::vector<int32_t>& prompt, int vocab,
                                   int max_new_tokens, float repetition, float frequency,
                                   float presence)
    : repetition_(repetition),
      frequency_(frequency),
      presence_(presence),
      generated_count_(static_cast<size_t>(vocab), 0),
      seen_(static_cast<size_t>(vocab), 0) {
  const size_t room = static_cast<size_t>(std::max(max_new_tokens, 0));
  seen_ids_.reserve(std::min(prompt.size() + room, static_cast<size_t>(vocab)));
  generated_ids_.reserve(std::min(room, static_cast<size_t>(vocab)));
  if (repetition_ == 1.0f) return;  // only repetition_penalty looks at the prompt
  for (int32_t id : prompt) {
    if (id < 0 || id >= vocab || seen_[static_cast<size_t>(id)]) continue;
    seen_[static_cast<size_t>(id)] = 1;
    seen_ids_.push_back(id);
  }
}

void PenaltyProcessor::apply(float* logits, int vocab) {
  if (repetition_ != 1.0f) {
    for (int32_t id : seen_ids_) {
      if (id >= vocab) continue;
      float& x = logits[id];
      x = x > 0.0f ? x / repetition_ : x * repetition_;
    }
  }
  if (frequency_ != 0.0f || presence_ != 0.0f) {
    for (int32_t id : generated_ids_) {
      if (id >= vocab) continue;
      logits[id] -=
          frequency_ * static_cast<float>(generated_count_[static_cast<size_t>(id)]) + presence_;
    }
  }
}

void PenaltyProcessor::accept(int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= seen_.size()) return;
  const size_t t = static_cast<size_t>(token);
  if (generated_count_[t]++ == 0) generated_ids_.push_back(token);
  if (repetition_ != 1.0f && !seen_[t]) {
    seen_[t] = 1;
    seen_ids_.push_back(token);
  }
}

std::unique_ptr<LogitProcessor> PenaltyProcessor::clone() const {
  return std::make_unique<PenaltyProcessor>(*this);
}

LogitBiasProcessor::LogitBiasProcessor(std::vector<std::pair<int32_t, float>> bias)
    : bias_(std::move(bias)) {
  for (auto& [id, b] : bias_) b = std::clamp(b, -100.0f, 100.0f);
}

void LogitBiasProcessor::apply(float* logits, int vocab) {
  for (const auto& [id, b] : bias_) {
    if (id >= 0 && id < vocab) logits[id] += b;
  }
}

std::unique_ptr<LogitProcessor> LogitBiasProcessor::clone() const {
  return std::make_unique<LogitBiasProcessor>(*this);
}

MinPProcessor::MinPProcessor(float min_p, float temperature)
    : min_p_(min_p), temperature_(temperature) {}

void MinPProcessor::apply(float* logits, int vocab) {
  if (min_p_ <= 0.0f || temperature_ <= 0.0f) return;
  // p_i >= min_p * p_max  <=>  (x_i - x_max) / T >= log(min_p): no softmax needed.
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
  const float floor = mx + temperature_ * std::log(min_p_);
  for (int i = 0; i < vocab; ++i) {
    if (logits[i] < floor) logits[i] = -std::numeric_limits<float>::infinity();
  }
}

std::unique_ptr<LogitProcessor> MinPProcessor::clone() const {
  return std::make_unique<MinPProcessor>(*this);
}

LogitProcessors make_logit_processors(const GenerationRequest& request, int vocab,
                                      std::unique_ptr<LogitProcessor> constraint) {
  const SamplingParams& s = request.sampling;
  LogitProcessors out;
  if (s.repetition_penalty != 1.0f || s.frequency_penalty != 0.0f || s.presence_penalty != 0.0f) {
    out.push_back(std::make_unique<PenaltyProcessor>(request.prompt_ids, vocab,
                                                     request.max_new_tokens, s.repetition_penalty,
                                                     s.frequency_penalty, s.presence_penalty));
  }
  if (!s.logit_bias.empty()) out.push_back(std::make_unique<LogitBiasProcessor>(s.logit_bias));
  if (constraint) out.push_back(std::move(constraint));  // a mask: before min_p
  if (s.min_p > 0.0f && s.temperature > 0.0f) {
    out.push_back(std::make_unique<MinPProcessor>(s.min_p, s.temperature));
  }
  return out;
}

}  // namespace tpinfer

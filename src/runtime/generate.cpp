#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/timer.h"
#include "core/watchdog.h"

namespace tpinfer {
namespace {


constexpr int32_t kStop = -1;

}  // namespace

GenerationResult generate(Engine& engine, World& world, bool leader,
                          const std::vector<int32_t>& prompt_ids, const GenerateOptions& opts,
                          Sampler* sampler, const std::function<void(int32_t)>& on_token) {
  GenerationResult res;
  // Everyone learns the prompt (followers need its length and ids for the forward).
  int32_t n_prompt = leader ? static_cast<int32_t>(prompt_ids.size()) : 0;
  world.broadcast_tp(&n_prompt, sizeof n_prompt);
  res.prompt_ids = leader ? prompt_ids : std::vector<int32_t>(n_prompt);
  if (n_prompt > 0) world.broadcast_tp(res.prompt_ids.data(), sizeof(int32_t) * n_prompt);
  TPI_CHECK(n_prompt > 0, "the prompt is empty after tokenization (this tokenizer adds no BOS): "
                          "give a prompt");
  const int max_seq = engine.shape().max_seq;
  TPI_CHECK(n_prompt + opts.max_new_tokens <= max_seq,
            "prompt (" << n_prompt << " tokens) + max_new_tokens (" << opts.max_new_tokens
                       << ") = " << n_prompt + opts.max_new_tokens << " exceeds max_seq="
                       << max_seq << "; raise max_seq or lower max_new_tokens");

  const int chunk = engine.shape().max_tokens;
  std::vector<int32_t> pos(static_cast<size_t>(chunk)), slots(static_cast<size_t>(chunk), opts.slot);
  auto t0 = std::chrono::steady_clock::now();
  const float* logits = nullptr;
  watch_phase(Phase::prefill);
  for (int start = 0; start < n_prompt; start += chunk) {
    const int n = std::min(chunk, n_prompt - start);
    for (int i = 0; i < n; ++i) pos[i] = start + i;
    const bool last = start + n == n_prompt;
    const int32_t row = n - 1;
    logits = engine.step(res.prompt_ids.data() + start, pos.data(), slots.data(), n, &row,
                         last ? 1 : 0, leader && last);
  }
  res.prefill_ms = ms_since(t0);

  int position = n_prompt;
  res.finish_reason = "length";
  res.generated.reserve(static_cast<size_t>(opts.max_new_tokens));
  res.decode_ms.reserve(static_cast<size_t>(opts.max_new_tokens));
  for (int i = 0; i < opts.max_new_tokens; ++i) {
    auto ts = std::chrono::steady_clock::now();
    watch_phase(Phase::decode, i);
    int32_t next = kStop;
    if (leader) {
      const int32_t tok = sampler->sample(logits);
      const bool stop = std::find(opts.stop_ids.begin(), opts.stop_ids.end(), tok) !=
                        opts.stop_ids.end();
      next = stop ? kStop : tok;
    }
    world.broadcast_tp(&next, sizeof next);
    if (i == 0) res.ttft_ms = ms_since(t0);
    if (next == kStop) {
      res.finish_reason = "stop";
      break;
    }
    res.generated.push_back(next);
    if (leader && on_token) on_token(next);
    if (i + 1 == opts.max_new_tokens) break;  // no forward needed for a token nobody samples
    const int32_t row = 0;
    logits = engine.step(&next, &position, &opts.slot, 1, &row, 1, leader);
    ++position;
    res.decode_ms.push_back(ms_since(ts));
  }
  return res;
}

}  // namespace tpinfer

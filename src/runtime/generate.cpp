#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/error.h"
#include "core/timer.h"
#include "core/watchdog.h"

namespace tpinfer {
namespace {

constexpr int32_t kStop = -1;
constexpr int32_t kFail = -2;  // the leader could not choose a token; its message follows

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
  TPI_CHECK(n_prompt > 0,
            "the prompt is empty after tokenization (this tokenizer adds no BOS): "
            "give a prompt");
  const int max_seq = engine.shape().max_seq;
  TPI_CHECK(n_prompt + opts.max_new_tokens <= max_seq,
            "prompt (" << n_prompt << " tokens) + max_new_tokens (" << opts.max_new_tokens
                       << ") = " << n_prompt + opts.max_new_tokens << " exceeds max_seq=" << max_seq
                       << "; raise max_seq or lower max_new_tokens");

  const int chunk = engine.shape().max_tokens;
  std::vector<int32_t> pos(static_cast<size_t>(chunk)),
      slots(static_cast<size_t>(chunk), opts.slot);
  // Runs ids[0..n) at positions 0..n-1 in chunks; logits of the last one.
  auto prefill = [&](const std::vector<int32_t>& ids, int n, int rope_seq_len) {
    const float* out = nullptr;
    for (int start = 0; start < n; start += chunk) {
      const int m = std::min(chunk, n - start);
      for (int i = 0; i < m; ++i) pos[i] = start + i;
      const bool last = start + m == n;
      const int32_t row = m - 1;
      out = engine.step(ids.data() + start, pos.data(), slots.data(), m, &row, last ? 1 : 0,
                        leader && last, rope_seq_len);
    }
    return out;
  };
  auto t0 = std::chrono::steady_clock::now();
  watch_phase(Phase::prefill);
  const float* logits = prefill(res.prompt_ids, n_prompt, 0);
  res.prefill_ms = ms_since(t0);
  // longrope (Phi3): the cache holds keys rotated with the short factors until the sequence
  // passes original_max_position_embeddings; there transformers' Phi3 drops its cache and
  // recomputes the whole sequence with the long factors. So do we, once.
  const RopeScaling& rope = engine.config().rope_scaling;
  const int recompute_at =
      rope.kind == RopeKind::longrope && n_prompt <= rope.original_max_position_embeddings
          ? rope.original_max_position_embeddings
          : -1;
  std::vector<int32_t> sequence;

  int position = n_prompt;
  res.finish_reason = "length";
  res.generated.reserve(static_cast<size_t>(opts.max_new_tokens));
  res.decode_ms.reserve(static_cast<size_t>(opts.max_new_tokens));
  for (int i = 0; i < opts.max_new_tokens; ++i) {
    auto ts = std::chrono::steady_clock::now();
    watch_phase(Phase::decode, i);
    int32_t next = kStop;
    std::string error;
    if (leader) {
      try {
        const int32_t tok = sampler->sample(logits);
        const bool stop =
            std::find(opts.stop_ids.begin(), opts.stop_ids.end(), tok) != opts.stop_ids.end();
        next = stop ? kStop : tok;
        if (!stop && on_token) on_token(tok);  // decoding may fail too (an id with no token)
      } catch (const std::exception& e) {
        next = kFail;
        error = e.what();
      }
    }
    world.broadcast_tp(&next, sizeof next);
    if (i == 0) res.ttft_ms = ms_since(t0);
    if (next == kFail) {  // every rank of the group learns why and ends the request alike
      char msg[1024] = {};
      if (leader) error.copy(msg, sizeof msg - 1);
      world.broadcast_tp(msg, sizeof msg);
      res.finish_reason = "error";
      res.error = "token " + std::to_string(i + 1) + ": " + msg;
      break;
    }
    if (next == kStop) {
      res.finish_reason = "stop";
      break;
    }
    res.generated.push_back(next);
    if (i + 1 == opts.max_new_tokens) break;  // no forward needed for a token nobody samples
    const int32_t row = 0;
    if (position == recompute_at) {
      sequence = res.prompt_ids;
      sequence.insert(sequence.end(), res.generated.begin(), res.generated.end());
      logits = prefill(sequence, position + 1, position + 1);
    } else {
      logits = engine.step(&next, &position, &opts.slot, 1, &row, 1, leader);
    }
    ++position;
    res.decode_ms.push_back(ms_since(ts));
  }
  return res;
}

}  // namespace tpinfer

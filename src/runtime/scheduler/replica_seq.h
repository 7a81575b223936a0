// The replica scheduler's sequence (one row of the step table: a choice of a request, its block
// table, sampler, decoder and what it produced) and the helpers its three source files share:
// replica_scheduler.cpp (admission, blocks, preemption, forks, cancel), replica_steps.cpp (the
// steps: planning, sending, collecting, micro-batches in flight) and replica_output.cpp (tokens,
// text, stops, deltas, outcomes). Internal to src/runtime/scheduler.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine/logit_processors.h"
#include "runtime/scheduler/replica_scheduler.h"

namespace tpinfer {

inline double ms_between(std::chrono::steady_clock::time_point a,
                         std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct ReplicaScheduler::Seq {
  enum class State { free, waiting_fork, running, preempted };
  State state = State::free;
  uint64_t seq = 0;
  int index = 0;      // the choice
  int n_choices = 1;  // of its request
  GenerationRequest req;
  uint64_t order = 0;       // admission order: prefill first come, first served; the newest
                            // (largest order, then index) is preempted first
  std::vector<int> blocks;  // the block table: position p is in blocks[p / block_size]
  int n_cached = 0;         // positions [0, n_cached) hold this sequence's KV
  int target = 0;           // prefill until n_cached == target (the prompt, or resumed tokens)
  PrefixCache::Link chain;  // the cached block that ends the sequence's first n_chained blocks
  int n_chained = 0;
  bool recompute_pending = false;  // longrope: resumed past the switch, recompute before decoding
  int32_t next_token = -1;         // the sampled token to feed at `position` (decoding)
  int position = 0;
  size_t max_stop = 0;  // longest stop string (bytes)
  std::vector<int32_t> generated;
  std::vector<TokenLogprob> logprobs;
  std::vector<TokenLogprob>
      prompt_logprobs;  // prompt_logprobs >= 0: one per prompt id after the first
  std::unique_ptr<Sampler> sampler;
  LogitProcessors processors;  // applied to a copy of the row (processed_) before the sampler
  std::unique_ptr<StreamDecoder> decoder;
  std::string text;
  size_t streamed = 0;    // bytes of text already sent in deltas
  size_t delta_from = 0;  // first generated id not yet sent in a delta
  int step_row = -1;      // its row in this step's table (-1: none yet)
  bool awaiting = false;  // in a step in flight that samples its next token
  uint64_t epoch = 0;  // + 1 when it finishes or is preempted: rows of steps sent before are moot
  Clock::time_point admitted, prefilled, first_token, last_token;
  std::vector<double> decode_ms;

  bool running() const { return state == State::running; }
  bool prefilling() const { return running() && n_cached < target; }
  bool decoding() const { return running() && n_cached >= target && next_token >= 0 && !awaiting; }
  bool newer_than(const Seq& o) const {
    return order != o.order ? order > o.order : index > o.index;
  }
};

}  // namespace tpinfer

// Continuous batching on one data-parallel replica: the only decode loop of the job, whatever
// the front end (a single prompt is a batch of one). The leader (tp rank 0) owns n_slots KV
// slots; a request takes a free slot, its prompt is prefilled in chunks, and from then on it
// contributes one decode token per step. Every step is ONE forward that mixes the decode tokens
// of all decoding slots with prefill chunks of newly admitted ones (up to the engine's
// max_tokens), so a slot that finishes is refilled at the next step while the others keep
// decoding. The leader broadcasts each step's plan (ids, positions, slots, logit rows) over the
// tp group; followers run the same forward. A slot is reused by writing from position 0 again.
// Sampling, stop ids and stop strings, log-probabilities, streaming deltas and cancellation all
// happen here, on the leader; what a request produces goes to RequestEvents.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "comm/world.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "runtime/scheduler/request.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

class ReplicaScheduler {
 public:
  // stop_ids end a request (unless it asks ignore_eos); ids [0, sample_vocab) can be sampled.
  // Without a tokenizer (tests of ids alone) requests produce ids and no text.
  // stop_signal() is polled after every step on every rank of the group: true on any of them
  // makes stop_requested() true on the leader.
  ReplicaScheduler(Engine& engine, World& world, const Tokenizer* tokenizer,
                   std::vector<int32_t> stop_ids, int sample_vocab, int replica,
                   std::function<bool()> stop_signal, RequestEvents& events);
  ~ReplicaScheduler();

  int n_slots() const { return static_cast<int>(slots_.size()); }
  int free_slots() const;
  int active() const { return n_slots() - free_slots(); }

  // Puts a tokenized request into a free slot (there must be one). A request for 0 new tokens
  // needs no forward and finishes at once.
  void admit(ScheduledRequest request);
  // One forward over every active slot; finished requests are reported to the events.
  void step();
  // Ends the request `seq` if it is here (finish_reason "cancelled", its slot freed at once).
  bool cancel(uint64_t seq);
  // A rank of this tp group was asked to stop (seen at the last step or heartbeat).
  bool stop_requested() const { return stop_requested_; }
  // Drops every active request without an event (its work is lost; a rerun redoes it).
  void abandon_all();
  // While the leader has nothing to run: every few seconds tells the followers it is alive (so
  // their watchdogs see progress) and polls the group's stop signals.
  void idle_heartbeat();
  // Tells the followers that this replica is done (they return from follow_replica_leader).
  void release_followers();

 private:
  struct Slot;
  using Clock = std::chrono::steady_clock;
  // Reports s as finished ("stop", "length": the decoder's held-back text is flushed and
  // streamed; "error" with its message, "cancelled": as it stands) and frees its slot.
  void finish(Slot& s, const char* reason, const std::string& error = "");
  // Ends s with finish_reason "error" and the message (the request alone fails).
  void fail(Slot& s, const std::string& error);
  // Samples the token for slot s from its logits row; reports and frees s when it finished.
  void accept_token(Slot& s, const float* logits);
  // Streams what s produced since its last delta (text held back while a stop string may
  // still match across the next piece).
  void send_delta(Slot& s, bool final);
  // Broadcasts the plan's header (command and sizes) to the followers.
  void send_header();
  // Broadcasts a plan of n tokens and n_rows logit rows to the followers and runs it.
  const float* run_plan(int n, int n_rows, int rope_seq_len);
  // longrope: recomputes slot i's whole sequence with the long factors (see step()).
  const float* recompute(int i);

  Engine& engine_;
  World& world_;
  const Tokenizer* tokenizer_;
  std::vector<int32_t> stop_ids_;
  int sample_vocab_;
  int replica_;
  std::function<bool()> stop_signal_;
  RequestEvents& events_;
  int recompute_at_ = -1;  // longrope: the position where a sequence is recomputed
  bool stop_requested_ = false;
  bool released_ = false;
  int64_t n_steps_ = 0;  // for the watchdog's "step N"
  uint64_t admitted_ = 0;
  Clock::time_point last_broadcast_;
  std::vector<std::unique_ptr<Slot>> slots_;
  // One step's plan, sized once (max_tokens tokens, max_logit_rows rows): nothing is allocated
  // per step.
  std::vector<int32_t> ids_, pos_, slot_of_;  // (max_tokens)
  std::vector<int32_t> rows_;                 // (max_logit_rows) batch index of each logit row
  std::vector<int> row_slot_;                 // (max_logit_rows) slot of each logit row
  std::vector<int> prefill_order_;            // slots prefilling, oldest first
  std::vector<int32_t> plan_;                 // packed for the followers: header + the above
  std::vector<float> processed_;  // (sample_vocab) a logits row after the request's processors
};

// The loop of a follower (tp rank > 0): runs the forwards its leader broadcasts until released.
void follow_replica_leader(Engine& engine, World& world, const std::function<bool()>& stop_signal);

}  // namespace tpinfer

// Continuous batching on one data-parallel replica. The leader (tp rank 0) owns n_slots KV
// slots; a request takes a free slot, its prompt is prefilled in chunks, and from then on it
// contributes one decode token per step. Every step is ONE forward that mixes the decode tokens
// of all decoding slots with prefill chunks of newly admitted ones (up to the engine's
// max_tokens), so a slot that finishes is refilled at the next step while the others keep
// decoding. The leader broadcasts each step's plan (ids, positions, slots, logit rows) over the
// tp group; followers run the same forward. A slot is reused by writing from position 0 again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "comm/world.h"
#include "runtime/frontend/batch_io.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

class ReplicaScheduler {
 public:
  // stop_signal() is polled after every step on every rank of the group: true on any of them
  // makes stop_requested() true on the leader.
  ReplicaScheduler(Engine& engine, World& world, const Tokenizer& tokenizer,
                   std::vector<int32_t> stop_ids, int replica, std::function<bool()> stop_signal);
  ~ReplicaScheduler();

  int n_slots() const { return static_cast<int>(slots_.size()); }
  int free_slots() const;
  int active() const { return n_slots() - free_slots(); }

  // Puts a request into a free slot (there must be one). A request for 0 new tokens needs no
  // forward and comes back finished at once.
  std::optional<BatchResult> admit(BatchRequest request);
  // One forward over every active slot; returns the requests that finished in it.
  std::vector<BatchResult> step();
  // A rank of this tp group was asked to stop (seen at the last step).
  bool stop_requested() const { return stop_requested_; }
  // Drops every active request (its work is lost; a rerun redoes it).
  void abandon_all();
  // Tells the followers that this replica is done (they return from follow_replica_leader).
  void release_followers();

 private:
  struct Slot;
  void finish(Slot& s, const char* reason, std::vector<BatchResult>& out);
  // Ends s with finish_reason "error" and the message (the request alone fails).
  void fail(Slot& s, const std::string& error, std::vector<BatchResult>& out);
  // Samples the token for slot s from its logits row; returns true when s finished.
  bool accept_token(Slot& s, const float* logits, std::vector<BatchResult>& out);

  Engine& engine_;
  World& world_;
  const Tokenizer& tokenizer_;
  std::vector<int32_t> stop_ids_;
  int replica_;
  std::function<bool()> stop_signal_;
  bool stop_requested_ = false;
  bool released_ = false;
  int64_t n_steps_ = 0;  // for the watchdog's "batch step N"
  uint64_t admitted_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;
  // One step's plan, sized once (max_tokens tokens, max_logit_rows rows): nothing is allocated
  // per step.
  std::vector<int32_t> ids_, pos_, slot_of_;  // (max_tokens)
  std::vector<int32_t> rows_;                 // (max_logit_rows) batch index of each logit row
  std::vector<int> row_slot_;                 // (max_logit_rows) slot of each logit row
  std::vector<int> prefill_order_;            // slots prefilling, oldest first
  std::vector<int32_t> plan_;                 // packed for the followers: header + the above
};

// The loop of a follower (tp rank > 0): runs the forwards its leader broadcasts until released.
void follow_replica_leader(Engine& engine, World& world, const std::function<bool()>& stop_signal);

}  // namespace tpinfer

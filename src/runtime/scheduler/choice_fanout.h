// STAND-IN for choices (GenerationRequest::n > 1) until ReplicaScheduler forks them itself
// (issue 16: prefill once, the prompt's KV blocks shared). On rank 0, a request with n choices
// is queued as n requests of one choice each (choice i: a fresh seq, seed choice_seed(seed, i));
// their events go back to the front end under the request's seq, tagged with the choice's
// index, so a front end sees exactly the contract of request.h (n outcomes, deltas by index).
// Each choice prefills the prompt on its own. When the scheduler forks choices, delete this file
// and its uses in RequestQueue (push, take_cancels) and run_replicas: nothing else changes.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "runtime/scheduler/request.h"

namespace tpinfer {

class ChoiceFanout {
 public:
  // What to queue for r: r itself when it has one choice, else its n choices, each with one
  // choice, its index's seed and a seq from next_seq. Thread-safe.
  std::vector<ScheduledRequest> split(ScheduledRequest r,
                                      const std::function<uint64_t()>& next_seq);
  // The seqs that a cancel of `seq` must reach: its choices' (seq itself when it was not split).
  std::vector<uint64_t> cancel_targets(uint64_t seq) const;
  // A choice's request seq and index; false when `seq` is not a choice of a split request.
  // `finished`: the choice's outcome, after which it is forgotten.
  bool resolve(uint64_t seq, uint64_t& request_seq, int& index, bool finished);

 private:
  struct Choice {
    uint64_t request = 0;
    int index = 0;
  };
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Choice> choices_;                 // choice seq -> its request
  std::unordered_map<uint64_t, std::vector<uint64_t>> pending_;  // request -> choices not ended
};

// The front end's events, with each choice's events renamed to its request's seq and index.
class ChoiceJoin : public RequestEvents {
 public:
  ChoiceJoin(ChoiceFanout& fanout, RequestEvents& front) : fanout_(fanout), front_(front) {}
  void on_delta(uint64_t seq, GenerationDelta d) override;
  void on_finish(uint64_t seq, GenerationOutcome o) override;

 private:
  ChoiceFanout& fanout_;
  RequestEvents& front_;
};

}  // namespace tpinfer

#include "runtime/scheduler/choice_fanout.h"

#include <algorithm>

namespace tpinfer {

std::vector<ScheduledRequest> ChoiceFanout::split(ScheduledRequest r,
                                                  const std::function<uint64_t()>& next_seq) {
  std::vector<ScheduledRequest> out;
  const int n = r.request.n;
  if (n <= 1) {
    out.push_back(std::move(r));
    return out;
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t>& pending = pending_[r.seq];
  for (int i = 0; i < n; ++i) {
    ScheduledRequest c;
    c.seq = next_seq();
    c.queued = r.queued;
    c.request = r.request;  // the prompt's ids are copied: each choice prefills them
    c.request.n = 1;
    c.request.sampling.seed = choice_seed(r.request.sampling.seed, i);
    choices_[c.seq] = Choice{r.seq, i};
    pending.push_back(c.seq);
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<uint64_t> ChoiceFanout::cancel_targets(uint64_t seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.find(seq);
  if (it == pending_.end()) return {seq};
  return it->second;
}

bool ChoiceFanout::resolve(uint64_t seq, uint64_t& request_seq, int& index, bool finished) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = choices_.find(seq);
  if (it == choices_.end()) return false;
  request_seq = it->second.request;
  index = it->second.index;
  if (finished) {
    choices_.erase(it);
    auto p = pending_.find(request_seq);
    if (p != pending_.end()) {
      p->second.erase(std::remove(p->second.begin(), p->second.end(), seq), p->second.end());
      if (p->second.empty()) pending_.erase(p);
    }
  }
  return true;
}

void ChoiceJoin::on_delta(uint64_t seq, GenerationDelta d) {
  uint64_t request = 0;
  int index = 0;
  if (fanout_.resolve(seq, request, index, false)) {
    d.index = index;
    seq = request;
  }
  front_.on_delta(seq, std::move(d));
}

void ChoiceJoin::on_finish(uint64_t seq, GenerationOutcome o) {
  uint64_t request = 0;
  int index = 0;
  if (fanout_.resolve(seq, request, index, true)) {
    o.index = index;
    seq = request;
  }
  front_.on_finish(seq, std::move(o));
}

}  // namespace tpinfer

#include "runtime/scheduler/replica_scheduler.h"

#include <algorithm>
#include <chrono>

#include "comm/mailbox.h"
#include "core/error.h"
#include "core/watchdog.h"
#include "runtime/job_setup.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Step plan layout, shared by leader and followers: [cmd, n_tokens, n_logit_rows] then
// ids[n], positions[n], slots[n], logit_rows[n_logit_rows] packed one after the other.
constexpr int32_t kCmdStep = 1;
constexpr int32_t kCmdDone = 0;
constexpr int kHeader = 3;

}  // namespace

struct ReplicaScheduler::Slot {
  bool busy = false;
  BatchRequest req;
  uint64_t order = 0;       // admission order: prefill goes first come, first served
  int n_prefilled = 0;      // prompt tokens already in the KV cache
  int32_t next_token = -1;  // the sampled token to feed at `position` (decoding slots)
  int position = 0;
  std::vector<int32_t> generated;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> decoder;
  std::string text;
  Clock::time_point admitted, first_token;

  bool decoding() const { return busy && n_prefilled == static_cast<int>(req.prompt_ids.size()); }
  bool prefilling() const { return busy && !decoding(); }
};

ReplicaScheduler::ReplicaScheduler(Engine& engine, World& world, const Tokenizer& tokenizer,
                                   std::vector<int32_t> stop_ids, int replica,
                                   std::function<bool()> stop_signal)
    : engine_(engine),
      world_(world),
      tokenizer_(tokenizer),
      stop_ids_(std::move(stop_ids)),
      replica_(replica),
      stop_signal_(std::move(stop_signal)) {
  const EngineShape& shape = engine.shape();
  for (int i = 0; i < shape.n_slots; ++i) slots_.push_back(std::make_unique<Slot>());
  const size_t T = static_cast<size_t>(shape.max_tokens),
               R = static_cast<size_t>(shape.max_logit_rows);
  ids_.resize(T);
  pos_.resize(T);
  slot_of_.resize(T);
  rows_.resize(R);
  row_slot_.resize(R);
  prefill_order_.reserve(slots_.size());
  plan_.resize(kHeader + 3 * T + R);
}

ReplicaScheduler::~ReplicaScheduler() = default;

int ReplicaScheduler::free_slots() const {
  return static_cast<int>(std::count_if(slots_.begin(), slots_.end(),
                                        [](const std::unique_ptr<Slot>& s) { return !s->busy; }));
}

std::optional<BatchResult> ReplicaScheduler::admit(BatchRequest request) {
  auto it = std::find_if(slots_.begin(), slots_.end(),
                         [](const std::unique_ptr<Slot>& s) { return !s->busy; });
  TPI_CHECK(it != slots_.end(), "scheduler: admit with no free slot");
  const int n_prompt = static_cast<int>(request.prompt_ids.size());
  TPI_CHECK(n_prompt > 0 && n_prompt + request.max_new_tokens <= engine_.shape().max_seq,
            "request " << request.key << ": prompt " << n_prompt << " + max_new_tokens "
                       << request.max_new_tokens << " does not fit max_seq "
                       << engine_.shape().max_seq);
  Slot& s = **it;
  s.busy = true;
  s.order = admitted_++;
  s.n_prefilled = 0;
  s.next_token = -1;
  s.position = 0;
  s.generated.clear();
  s.text.clear();
  s.sampler =
      std::make_unique<Sampler>(sampleable_vocab(engine_.config(), tokenizer_), request.sampling);
  s.decoder = std::make_unique<StreamDecoder>(tokenizer_, true);
  // The prompt gives the decoder its context, so the text is the exact continuation (a leading
  // space of the first new word is kept: prompt + text reads as the whole).
  for (int32_t id : request.prompt_ids) s.decoder->push(id);
  s.admitted = Clock::now();
  s.first_token = s.admitted;
  s.req = std::move(request);
  if (s.req.max_new_tokens == 0) {
    std::vector<BatchResult> out;
    finish(s, "length", out);
    return std::move(out.front());
  }
  return std::nullopt;
}

void ReplicaScheduler::finish(Slot& s, const char* reason, std::vector<BatchResult>& out) {
  std::string tail = s.decoder->flush();
  std::string finish_reason = reason;
  if (!tail.empty()) {
    const size_t from = s.text.size();
    s.text += tail;
    // The held-back bytes may complete a stop string.
    for (const std::string& stop : s.req.stop) {
      const size_t start = from >= stop.size() ? from - stop.size() + 1 : 0;
      const size_t at = s.text.find(stop, start);
      if (at != std::string::npos) {
        s.text.resize(at);
        finish_reason = "stop";
      }
    }
  }
  BatchResult r;
  r.id = s.req.id;
  r.text = std::move(s.text);
  r.finish_reason = finish_reason;
  r.prompt_tokens = static_cast<int>(s.req.prompt_ids.size());
  r.token_ids = std::move(s.generated);
  const Clock::time_point now = Clock::now();
  r.ttft_ms = r.token_ids.empty() ? 0.0 : ms_between(s.admitted, s.first_token);
  r.total_ms = ms_between(s.admitted, now);
  r.replica = replica_;
  out.push_back(std::move(r));
  s.busy = false;
  s.sampler.reset();
  s.decoder.reset();
  s.text.clear();
  s.generated.clear();
}

void ReplicaScheduler::fail(Slot& s, const std::string& error, std::vector<BatchResult>& out) {
  s.decoder->reset();  // what it holds may be the undecodable id itself
  s.req.stop.clear();
  const size_t n = s.generated.size();
  finish(s, "error", out);
  out.back().error = "token " + std::to_string(n + 1) + ": " + error;
}

bool ReplicaScheduler::accept_token(Slot& s, const float* logits, std::vector<BatchResult>& out) {
  // A failure here belongs to this request alone (non-finite logits, an id the tokenizer cannot
  // decode): it ends with an error line and the other slots go on. The followers need not know:
  // the slot simply takes no more tokens, as after a stop.
  int32_t tok = -1;
  std::string piece;
  try {
    tok = s.sampler->sample(logits);
    if (s.generated.empty()) s.first_token = Clock::now();
    if (std::find(stop_ids_.begin(), stop_ids_.end(), tok) != stop_ids_.end()) {
      finish(s, "stop", out);
      return true;
    }
    piece = s.decoder->push(tok);
  } catch (const std::exception& e) {
    fail(s, e.what(), out);
    return true;
  }
  s.generated.push_back(tok);
  if (!piece.empty()) {
    const size_t from = s.text.size();
    s.text += piece;
    // Only a match that ends in the new piece is new; look back by the stop's length.
    size_t cut = std::string::npos;
    for (const std::string& stop : s.req.stop) {
      const size_t start = from >= stop.size() ? from - stop.size() + 1 : 0;
      const size_t at = s.text.find(stop, start);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      s.text.resize(cut);
      s.decoder->reset();  // what it still holds belongs after the stop
      finish(s, "stop", out);
      return true;
    }
  }
  if (static_cast<int>(s.generated.size()) >= s.req.max_new_tokens) {
    finish(s, "length", out);
    return true;
  }
  s.next_token = tok;
  return false;
}

std::vector<BatchResult> ReplicaScheduler::step() {
  watch_phase(Phase::batch_step, n_steps_++);
  std::vector<BatchResult> out;
  const int budget = engine_.shape().max_tokens;
  int n = 0, n_rows = 0;
  auto add_token = [&](int32_t id, int position, int slot) {
    ids_[n] = id;
    pos_[n] = position;
    slot_of_[n] = slot;
    ++n;
  };
  auto add_row = [&](int slot) {
    row_slot_[n_rows] = slot;
    rows_[n_rows++] = n - 1;
  };

  // Decode tokens first: one per decoding slot (n_slots <= max_tokens, so they always fit).
  for (int i = 0; i < n_slots(); ++i) {
    Slot& s = *slots_[i];
    if (!s.decoding()) continue;
    add_token(s.next_token, s.position, i);
    add_row(i);
  }
  // Then prefill chunks, oldest admission first, with what is left of the token budget.
  prefill_order_.clear();
  for (int i = 0; i < n_slots(); ++i) {
    if (slots_[i]->prefilling()) prefill_order_.push_back(i);
  }
  std::sort(prefill_order_.begin(), prefill_order_.end(),
            [&](int a, int b) { return slots_[a]->order < slots_[b]->order; });
  for (int i : prefill_order_) {
    if (n == budget) break;
    Slot& s = *slots_[i];
    const int n_prompt = static_cast<int>(s.req.prompt_ids.size());
    const int take = std::min(budget - n, n_prompt - s.n_prefilled);
    for (int k = 0; k < take; ++k) {
      add_token(s.req.prompt_ids[s.n_prefilled + k], s.n_prefilled + k, i);
    }
    s.n_prefilled += take;
    if (s.n_prefilled == n_prompt) add_row(i);  // the prompt's last token gives the first new one
  }
  if (n == 0) return out;

  if (world_.tp() > 1) {  // the plan goes to the followers packed: header, then the four arrays
    plan_[0] = kCmdStep;
    plan_[1] = n;
    plan_[2] = n_rows;
    int32_t* p = plan_.data() + kHeader;
    p = std::copy(ids_.begin(), ids_.begin() + n, p);
    p = std::copy(pos_.begin(), pos_.begin() + n, p);
    p = std::copy(slot_of_.begin(), slot_of_.begin() + n, p);
    std::copy(rows_.begin(), rows_.begin() + n_rows, p);
    world_.broadcast_tp(plan_.data(), sizeof(int32_t) * kHeader);
    world_.broadcast_tp(plan_.data() + kHeader, sizeof(int32_t) * (3 * n + n_rows));
  }
  const float* logits =
      engine_.step(ids_.data(), pos_.data(), slot_of_.data(), n, rows_.data(), n_rows, n_rows > 0);
  stop_requested_ = any_in_tp_group(world_, stop_signal_()) || stop_requested_;

  const size_t vocab = static_cast<size_t>(engine_.config().vocab_size);
  for (int r = 0; r < n_rows; ++r) {
    Slot& s = *slots_[row_slot_[r]];
    // A decoding slot's fed token is now in the cache; a finished prefill starts after the prompt.
    s.position = s.next_token >= 0 ? s.position + 1 : static_cast<int>(s.req.prompt_ids.size());
    accept_token(s, logits + r * vocab, out);
  }
  return out;
}

void ReplicaScheduler::abandon_all() {
  for (std::unique_ptr<Slot>& s : slots_) {
    s->busy = false;
    s->sampler.reset();
    s->decoder.reset();
  }
}

void ReplicaScheduler::release_followers() {
  if (released_) return;
  released_ = true;
  if (world_.tp() == 1) return;
  plan_[0] = kCmdDone;
  plan_[1] = 0;
  plan_[2] = 0;
  world_.broadcast_tp(plan_.data(), sizeof(int32_t) * kHeader);
}

void follow_replica_leader(Engine& engine, World& world, const std::function<bool()>& stop_signal) {
  const EngineShape& shape = engine.shape();
  std::vector<int32_t> buf(3 * static_cast<size_t>(shape.max_tokens) + shape.max_logit_rows);
  int32_t header[kHeader];
  for (int64_t n_steps = 0;; ++n_steps) {
    watch_phase(Phase::batch_step, n_steps);
    world.broadcast_tp(header, sizeof header);
    if (header[0] == kCmdDone) return;
    TPI_CHECK(header[0] == kCmdStep && header[1] > 0 && header[1] <= shape.max_tokens &&
                  header[2] >= 0 && header[2] <= shape.max_logit_rows,
              "follower: malformed step plan from the leader");
    const int n = header[1], n_rows = header[2];
    world.broadcast_tp(buf.data(), sizeof(int32_t) * (3 * n + n_rows));
    engine.step(buf.data(), buf.data() + n, buf.data() + 2 * n, n, buf.data() + 3 * n, n_rows,
                false);
    any_in_tp_group(world, stop_signal());
  }
}

}  // namespace tpinfer

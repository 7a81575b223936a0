#include "runtime/scheduler/replica_scheduler.h"

#include <algorithm>

#include "comm/mailbox.h"
#include "core/error.h"
#include "core/watchdog.h"
#include "runtime/engine/logprobs.h"
#include "runtime/scheduler/logit_processors.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Step plan layout, shared by leader and followers: [cmd, n_tokens, n_logit_rows, rope_seq_len]
// then ids[n], positions[n], slots[n], logit_rows[n_logit_rows] packed one after the other.
constexpr int32_t kCmdDone = 0;
constexpr int32_t kCmdStep = 1;
constexpr int32_t kCmdIdle = 2;  // no forward: the leader is alive and polls the stop flags
constexpr int kHeader = 4;
// An idle leader tells its followers it is alive this often (well under any watchdog timeout).
constexpr double kHeartbeatMs = 2000.0;

// Where `text` can be cut without splitting a UTF-8 character, at or before `at`.
size_t utf8_boundary(const std::string& text, size_t at) {
  while (at > 0 && at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  return at;
}

}  // namespace

struct ReplicaScheduler::Slot {
  bool busy = false;
  uint64_t seq = 0;
  GenerationRequest req;
  uint64_t order = 0;       // admission order: prefill goes first come, first served
  int n_prefilled = 0;      // prompt tokens already in the KV cache
  int32_t next_token = -1;  // the sampled token to feed at `position` (decoding slots)
  int position = 0;
  size_t max_stop = 0;  // longest stop string (bytes)
  std::vector<int32_t> generated;
  std::vector<TokenLogprob> logprobs;
  std::unique_ptr<Sampler> sampler;
  std::vector<std::unique_ptr<LogitProcessor>> processors;  // applied before sampling, in order
  std::unique_ptr<StreamDecoder> decoder;
  std::string text;
  size_t streamed = 0;    // bytes of text already sent in deltas
  size_t delta_from = 0;  // first generated id not yet sent in a delta
  Clock::time_point admitted, prefilled, first_token, last_token;
  std::vector<double> decode_ms;

  bool decoding() const { return busy && n_prefilled == static_cast<int>(req.prompt_ids.size()); }
  bool prefilling() const { return busy && !decoding(); }
};

ReplicaScheduler::ReplicaScheduler(Engine& engine, World& world, const Tokenizer* tokenizer,
                                   std::vector<int32_t> stop_ids, int sample_vocab, int replica,
                                   std::function<bool()> stop_signal, RequestEvents& events)
    : engine_(engine),
      world_(world),
      tokenizer_(tokenizer),
      stop_ids_(std::move(stop_ids)),
      sample_vocab_(sample_vocab),
      replica_(replica),
      stop_signal_(std::move(stop_signal)),
      events_(events) {
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
  // longrope (Phi3): the cache holds keys rotated with the short factors until the sequence
  // passes original_max_position_embeddings; there transformers' Phi3 drops its cache and
  // recomputes the whole sequence with the long factors. So do we, once per request.
  const RopeScaling& rope = engine.config().rope_scaling;
  if (rope.kind == RopeKind::longrope) recompute_at_ = rope.original_max_position_embeddings;
  last_broadcast_ = Clock::now();
}

ReplicaScheduler::~ReplicaScheduler() = default;

int ReplicaScheduler::free_slots() const {
  return static_cast<int>(std::count_if(slots_.begin(), slots_.end(),
                                        [](const std::unique_ptr<Slot>& s) { return !s->busy; }));
}

void ReplicaScheduler::admit(ScheduledRequest request) {
  auto it = std::find_if(slots_.begin(), slots_.end(),
                         [](const std::unique_ptr<Slot>& s) { return !s->busy; });
  TPI_CHECK(it != slots_.end(), "scheduler: admit with no free slot");
  GenerationRequest& req = request.request;
  const int n_prompt = static_cast<int>(req.prompt_ids.size());
  TPI_CHECK(n_prompt > 0 && n_prompt + req.max_new_tokens <= engine_.shape().max_seq,
            "request " << request.seq << ": prompt " << n_prompt << " + max_new_tokens "
                       << req.max_new_tokens << " does not fit max_seq "
                       << engine_.shape().max_seq);
  Slot& s = **it;
  s.busy = true;
  s.seq = request.seq;
  s.order = admitted_++;
  s.n_prefilled = 0;
  s.next_token = -1;
  s.position = 0;
  s.generated.clear();
  s.logprobs.clear();
  s.text.clear();
  s.streamed = 0;
  s.delta_from = 0;
  s.decode_ms.clear();
  s.max_stop = 0;
  for (const std::string& stop : req.stop) s.max_stop = std::max(s.max_stop, stop.size());
  s.sampler = std::make_unique<Sampler>(sample_vocab_, req.sampling);
  std::string processor_error;
  try {
    s.processors = make_logit_processors(req, tokenizer_, stop_ids_);
  } catch (const std::exception& e) {
    processor_error = e.what();
  }
  if (tokenizer_) {
    s.decoder = std::make_unique<StreamDecoder>(*tokenizer_, !req.keep_special_text);
    // The prompt gives the decoder its context, so the text is the exact continuation (a
    // leading space of the first new word is kept: prompt + text reads as the whole).
    for (int32_t id : req.prompt_ids) s.decoder->push(id);
  }
  s.admitted = Clock::now();
  s.prefilled = s.first_token = s.last_token = s.admitted;
  s.req = std::move(req);
  if (!processor_error.empty()) {
    finish(s, "error", processor_error);
  } else if (s.req.max_new_tokens == 0) {
    finish(s, "length");
  }
}

void ReplicaScheduler::send_delta(Slot& s, bool final) {
  if (!s.req.stream) return;
  size_t upto = s.text.size();
  if (!final && s.max_stop > 1) {  // a stop string may still start in the last max_stop-1 bytes
    upto = upto > s.max_stop - 1 ? utf8_boundary(s.text, upto - (s.max_stop - 1)) : 0;
    upto = std::max(upto, s.streamed);
  }
  if (upto == s.streamed && s.delta_from == s.generated.size()) return;
  GenerationDelta d;
  d.text = s.text.substr(s.streamed, upto - s.streamed);
  d.token_ids.assign(s.generated.begin() + static_cast<std::ptrdiff_t>(s.delta_from),
                     s.generated.end());
  if (s.req.logprobs >= 0) {
    d.logprobs.assign(s.logprobs.begin() + static_cast<std::ptrdiff_t>(s.delta_from),
                      s.logprobs.end());
  }
  s.streamed = upto;
  s.delta_from = s.generated.size();
  events_.on_delta(s.seq, std::move(d));
}

void ReplicaScheduler::finish(Slot& s, const char* reason, const std::string& error) {
  std::string finish_reason = reason;
  const bool ok = finish_reason == "stop" || finish_reason == "length";
  if (ok) {
    const std::string tail = s.decoder ? s.decoder->flush() : std::string();
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
    send_delta(s, true);
  }
  GenerationOutcome o;
  o.text = std::move(s.text);
  o.finish_reason = finish_reason;
  o.error = error;
  o.prompt_tokens = static_cast<int>(s.req.prompt_ids.size());
  o.token_ids = std::move(s.generated);
  o.logprobs = std::move(s.logprobs);
  const Clock::time_point now = Clock::now();
  o.prefill_ms = ms_between(s.admitted, s.prefilled);
  o.ttft_ms = o.token_ids.empty() ? 0.0 : ms_between(s.admitted, s.first_token);
  o.total_ms = ms_between(s.admitted, now);
  o.decode_ms = std::move(s.decode_ms);
  o.replica = replica_;
  s.busy = false;
  s.sampler.reset();
  s.processors.clear();
  s.decoder.reset();
  s.text.clear();
  s.generated.clear();
  s.logprobs.clear();
  s.req = GenerationRequest();
  events_.on_finish(s.seq, std::move(o));
}

void ReplicaScheduler::fail(Slot& s, const std::string& error) {
  finish(s, "error", "token " + std::to_string(s.generated.size() + 1) + ": " + error);
}

void ReplicaScheduler::accept_token(Slot& s, const float* logits) {
  // A failure here belongs to this request alone (non-finite logits, an id the tokenizer cannot
  // decode): it ends with an error and the other slots go on. The followers need not know: the
  // slot simply takes no more tokens, as after a stop.
  int32_t tok = -1;
  std::string piece;
  const Clock::time_point now = Clock::now();
  try {
    const float* row = logits;
    if (!s.processors.empty()) {  // on a copy: logprobs report the model's own distribution
      processed_.assign(logits, logits + sample_vocab_);
      for (auto& p : s.processors) p->apply(processed_.data(), sample_vocab_);
      row = processed_.data();
    }
    tok = s.sampler->sample(row);
    for (auto& p : s.processors) p->accept(tok);
    if (s.generated.empty()) {
      s.first_token = now;
    } else {
      s.decode_ms.push_back(ms_between(s.last_token, now));
    }
    s.last_token = now;
    if (!s.req.ignore_eos &&
        std::find(stop_ids_.begin(), stop_ids_.end(), tok) != stop_ids_.end()) {
      finish(s, "stop");
      return;
    }
    if (s.decoder) piece = s.decoder->push(tok);
    if (s.req.logprobs >= 0) {
      s.logprobs.push_back(token_logprobs(logits, sample_vocab_, tok, s.req.logprobs));
    }
  } catch (const std::exception& e) {
    fail(s, e.what());
    return;
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
      s.decoder->reset();  // what it still holds belongs after the stop (a piece: a decoder)
      finish(s, "stop");
      return;
    }
  }
  const bool constraint_done =
      std::any_of(s.processors.begin(), s.processors.end(),
                  [](const std::unique_ptr<LogitProcessor>& p) { return p->finished(); });
  if (constraint_done) {  // a complete grammar allows nothing but the end
    finish(s, "stop");
    return;
  }
  if (static_cast<int>(s.generated.size()) >= s.req.max_new_tokens) {
    finish(s, "length");
    return;
  }
  s.next_token = tok;
  send_delta(s, false);
}

void ReplicaScheduler::send_header() {
  // The followers wait for it with a non-blocking broadcast (they may wait long), and a
  // non-blocking collective only matches another: so is this one (the root's completes at once).
  world_.broadcast_tp_sleepy(plan_.data(), sizeof(int32_t) * kHeader, 0, 0);
  last_broadcast_ = Clock::now();
}

const float* ReplicaScheduler::run_plan(int n, int n_rows, int rope_seq_len) {
  if (world_.tp() > 1) {  // the plan goes to the followers packed: header, then the four arrays
    plan_[0] = kCmdStep;
    plan_[1] = n;
    plan_[2] = n_rows;
    plan_[3] = rope_seq_len;
    int32_t* p = plan_.data() + kHeader;
    p = std::copy(ids_.begin(), ids_.begin() + n, p);
    p = std::copy(pos_.begin(), pos_.begin() + n, p);
    p = std::copy(slot_of_.begin(), slot_of_.begin() + n, p);
    std::copy(rows_.begin(), rows_.begin() + n_rows, p);
    send_header();
    world_.broadcast_tp(plan_.data() + kHeader, sizeof(int32_t) * (3 * n + n_rows));
  }
  const float* logits = engine_.step(ids_.data(), pos_.data(), slot_of_.data(), n, rows_.data(),
                                     n_rows, n_rows > 0, rope_seq_len);
  stop_requested_ = any_in_tp_group(world_, stop_signal_()) || stop_requested_;
  return logits;
}

const float* ReplicaScheduler::recompute(int i) {
  Slot& s = *slots_[i];
  // The sequence so far: the prompt, then every generated token (the last one, next_token, is
  // the one this step feeds at `position`).
  std::vector<int32_t> sequence = s.req.prompt_ids;
  sequence.insert(sequence.end(), s.generated.begin(), s.generated.end());
  const int n = s.position + 1;
  const int chunk = engine_.shape().max_tokens;
  const float* logits = nullptr;
  for (int start = 0; start < n; start += chunk) {
    const int m = std::min(chunk, n - start);
    for (int k = 0; k < m; ++k) {
      ids_[k] = sequence[static_cast<size_t>(start + k)];
      pos_[k] = start + k;
      slot_of_[k] = i;
    }
    const bool last = start + m == n;
    rows_[0] = m - 1;
    logits = run_plan(m, last ? 1 : 0, n);
  }
  return logits;
}

void ReplicaScheduler::step() {
  watch_phase(Phase::step, n_steps_++);
  // longrope: a slot about to feed the token at original_max_position_embeddings recomputes its
  // whole sequence alone, once (a prompt longer than that was prefilled with the long factors).
  for (int i = 0; i < n_slots() && recompute_at_ >= 0; ++i) {
    Slot& s = *slots_[i];
    if (!s.decoding() || s.next_token < 0 || s.position != recompute_at_ ||
        static_cast<int>(s.req.prompt_ids.size()) > recompute_at_) {
      continue;
    }
    const float* logits = recompute(i);
    ++s.position;
    accept_token(s, logits);
  }

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
  if (n == 0) return;

  const float* logits = run_plan(n, n_rows, 0);
  const Clock::time_point done = Clock::now();
  const size_t vocab = static_cast<size_t>(engine_.config().vocab_size);
  for (int r = 0; r < n_rows; ++r) {
    Slot& s = *slots_[row_slot_[r]];
    if (s.next_token < 0) {  // a finished prefill starts after the prompt
      s.prefilled = done;
      s.position = static_cast<int>(s.req.prompt_ids.size());
    } else {  // a decoding slot's fed token is now in the cache
      ++s.position;
    }
    accept_token(s, logits + r * vocab);
  }
}

bool ReplicaScheduler::cancel(uint64_t seq) {
  for (std::unique_ptr<Slot>& s : slots_) {
    if (!s->busy || s->seq != seq) continue;
    if (s->decoder) s->decoder->reset();
    s->req.stop.clear();
    s->req.stream = false;  // no more deltas: the client is gone
    finish(*s, "cancelled");
    return true;
  }
  return false;
}

void ReplicaScheduler::abandon_all() {
  for (std::unique_ptr<Slot>& s : slots_) {
    s->busy = false;
    s->sampler.reset();
    s->processors.clear();
    s->decoder.reset();
    s->req = GenerationRequest();
  }
}

void ReplicaScheduler::idle_heartbeat() {
  if (world_.tp() == 1) {
    stop_requested_ = stop_signal_() || stop_requested_;
    return;
  }
  if (ms_between(last_broadcast_, Clock::now()) < kHeartbeatMs) return;
  plan_[0] = kCmdIdle;
  plan_[1] = plan_[2] = plan_[3] = 0;
  send_header();
  stop_requested_ = any_in_tp_group(world_, stop_signal_()) || stop_requested_;
  last_broadcast_ = Clock::now();
}

void ReplicaScheduler::release_followers() {
  if (released_) return;
  released_ = true;
  if (world_.tp() == 1) return;
  plan_[0] = kCmdDone;
  plan_[1] = plan_[2] = plan_[3] = 0;
  send_header();
}

void follow_replica_leader(Engine& engine, World& world, const std::function<bool()>& stop_signal) {
  const EngineShape& shape = engine.shape();
  std::vector<int32_t> buf(3 * static_cast<size_t>(shape.max_tokens) + shape.max_logit_rows);
  int32_t header[kHeader];
  for (int64_t n_steps = 0;; ++n_steps) {
    watch_phase(Phase::step, n_steps);
    // The leader may have nothing to run for a long time (an idle server): wait without
    // spinning; its heartbeats keep this wait well inside the watchdog's timeout.
    world.broadcast_tp_sleepy(header, sizeof header);
    if (header[0] == kCmdDone) return;
    if (header[0] == kCmdIdle) {
      any_in_tp_group(world, stop_signal());
      continue;
    }
    TPI_CHECK(header[0] == kCmdStep && header[1] > 0 && header[1] <= shape.max_tokens &&
                  header[2] >= 0 && header[2] <= shape.max_logit_rows && header[3] >= 0,
              "follower: malformed step plan from the leader");
    const int n = header[1], n_rows = header[2];
    world.broadcast_tp(buf.data(), sizeof(int32_t) * (3 * n + n_rows));
    engine.step(buf.data(), buf.data() + n, buf.data() + 2 * n, n, buf.data() + 3 * n, n_rows,
                false, header[3]);
    any_in_tp_group(world, stop_signal());
  }
}

}  // namespace tpinfer

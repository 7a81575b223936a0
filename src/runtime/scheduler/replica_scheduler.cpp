#include "runtime/scheduler/replica_scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "comm/mailbox.h"
#include "core/error.h"
#include "core/log.h"
#include "core/watchdog.h"
#include "runtime/engine/logit_processors.h"
#include "runtime/engine/logprobs.h"
#include "runtime/scheduler/grammar_constraint.h"
#include "runtime/scheduler/request_check.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// An idle leader tells its followers it is alive this often (well under any watchdog timeout).
constexpr double kHeartbeatMs = 2000.0;

// Where `text` can be cut without splitting a UTF-8 character, at or before `at`.
size_t utf8_boundary(const std::string& text, size_t at) {
  while (at > 0 && at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  return at;
}

// Steps in flight with pipeline stages: pp micro-batches, so every stage has one to run
// (TPINFER_PP_MICROBATCHES=K overrides it, 1 to 8: one step in flight is the way to measure what
// the overlap gains). Not for longrope (Phi-3): its once-per-request recompute needs the step's
// logits before anything else runs.
int pipeline_depth(const Engine& engine, const World& world) {
  if (world.pp() == 1 || engine.config().rope_scaling.kind == RopeKind::longrope) return 1;
  const char* env = std::getenv("TPINFER_PP_MICROBATCHES");
  if (env == nullptr || *env == '\0') return world.pp();
  char* end = nullptr;
  const long k = std::strtol(env, &end, 10);
  TPI_CHECK(*end == '\0' && k >= 1 && k <= kPlanSendsInFlight,
            "TPINFER_PP_MICROBATCHES: expected an integer from 1 to " << kPlanSendsInFlight
                                                                      << ", found '" << env << "'");
  return static_cast<int>(k);
}

int blocks_for(int positions, int block_size) {
  return (positions + block_size - 1) / block_size;
}

}  // namespace

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

ReplicaScheduler::ReplicaScheduler(Engine& engine, World& world, const Tokenizer* tokenizer,
                                   std::vector<int32_t> stop_ids, int sample_vocab, int replica,
                                   std::function<bool()> stop_signal, RequestEvents& events,
                                   bool prefix_caching)
    : engine_(engine),
      world_(world),
      tokenizer_(tokenizer),
      stop_ids_(std::move(stop_ids)),
      sample_vocab_(sample_vocab),
      replica_(replica),
      stop_signal_(std::move(stop_signal)),
      events_(events),
      block_size_(engine.shape().block_size),
      pool_(engine.shape().pool_blocks()),
      channel_(world, engine, pipeline_depth(engine, world)) {
  const EngineShape& shape = engine.shape();
  // longrope (Phi3): the cache holds keys rotated with the short factors until the sequence
  // passes original_max_position_embeddings; there transformers' Phi3 drops its cache and
  // recomputes the whole sequence with the long factors. So do we, once per request. A
  // recompute rewrites the sequence's blocks, so they can be neither cached nor shared.
  const RopeScaling& rope = engine.config().rope_scaling;
  if (rope.kind == RopeKind::longrope) recompute_at_ = rope.original_max_position_embeddings;
  if (prefix_caching && recompute_at_ < 0) {
    cache_ = std::make_unique<PrefixCache>(pool_, block_size_);
  }
  stats_.blocks_total = pool_.n_blocks();
  for (int i = 0; i < shape.n_slots; ++i) seqs_.push_back(std::make_unique<Seq>());
  const size_t T = static_cast<size_t>(shape.max_tokens),
               R = static_cast<size_t>(shape.max_logit_rows);
  ids_.resize(T);
  pos_.resize(T);
  row_of_.resize(T);
  row_token_.resize(R);
  row_logits_.resize(R);
  rows_.resize(R);
  steps_.resize(static_cast<size_t>(channel_.depth()));
  for (StepRows& b : steps_) {
    b.seq.resize(R);
    b.prompt_pos.resize(R);
    b.epoch.resize(R);
  }
  processed_.resize(static_cast<size_t>(sample_vocab_));
  table_.resize(static_cast<size_t>(shape.n_slots) * shape.blocks_per_seq());
  table_seq_.resize(static_cast<size_t>(shape.n_slots));
  copies_.reserve(2 * static_cast<size_t>(shape.n_slots));
  order_.reserve(seqs_.size());
  plan_.resize(plan_ints(shape));
  last_broadcast_ = Clock::now();
}

ReplicaScheduler::~ReplicaScheduler() = default;

int ReplicaScheduler::free_slots() const {
  int free = 0;
  for (const std::unique_ptr<Seq>& s : seqs_) free += s->state == Seq::State::free;
  for (const Waiting& w : waiting_) free -= w.request.request.n;
  return std::max(0, free);
}

int ReplicaScheduler::active() const {
  int busy = static_cast<int>(waiting_.size());
  for (const std::unique_ptr<Seq>& s : seqs_) busy += s->state != Seq::State::free;
  return busy;
}

KvCacheStats ReplicaScheduler::kv_stats() const {
  KvCacheStats k = stats_;
  k.blocks_total = pool_.n_blocks();
  k.blocks_used = pool_.n_used();
  k.blocks_cached = pool_.n_cached_free();
  return k;
}

void ReplicaScheduler::admit(ScheduledRequest request) {
  GenerationRequest& req = request.request;
  const int n_prompt = static_cast<int>(req.prompt_ids.size());
  const int n = std::max(1, req.n);
  req.n = n;
  std::string error;
  try {
    TPI_CHECK(n_prompt > 0 && n_prompt + req.max_new_tokens <= engine_.shape().max_seq,
              "prompt " << n_prompt << " + max_new_tokens " << req.max_new_tokens
                        << " does not fit max_seq " << engine_.shape().max_seq);
    check_request_kv(n_prompt, req.max_new_tokens, n, kv_limits(engine_.shape()));
  } catch (const std::exception& e) {
    error = e.what();
  }
  // A prompt to score (prompt_logprobs) is prefilled even when nothing is generated.
  if (!error.empty() || (req.max_new_tokens == 0 && req.prompt_logprobs < 0)) {
    // Nothing to run: every choice ends at once ("length" for 0 tokens, else the refusal).
    for (int i = 0; i < n; ++i) {
      GenerationOutcome o;
      o.index = i;
      o.finish_reason = error.empty() ? "length" : "error";
      o.error = error;
      o.prompt_tokens = n_prompt;
      o.replica = replica_;
      events_.on_finish(request.seq, std::move(o));
    }
    return;
  }
  waiting_.push_back(Waiting{std::move(request), Clock::now()});
}

int32_t ReplicaScheduler::token_at(const Seq& s, int position) const {
  const int n_prompt = static_cast<int>(s.req.prompt_ids.size());
  return position < n_prompt ? s.req.prompt_ids[static_cast<size_t>(position)]
                             : s.generated[static_cast<size_t>(position - n_prompt)];
}

void ReplicaScheduler::release_blocks(Seq& s) {
  // Last block first: the pool's LRU then evicts a prefix's tail before its head.
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) pool_.release(*it);
  s.blocks.clear();
  s.n_cached = 0;
  s.chain = PrefixCache::Link{};
  s.n_chained = 0;
}

bool ReplicaScheduler::take_blocks(Seq& s, int upto, bool use_cache) {
  // The sequence's first `upto` tokens, contiguous for the prefix lookup.
  std::vector<int32_t> tokens(s.req.prompt_ids);
  tokens.insert(tokens.end(), s.generated.begin(), s.generated.end());
  std::vector<int> got;
  PrefixCache::Link link;
  if (cache_ && use_cache) {
    // A fresh prompt computes at least its last token (its logits give the first new one); a
    // resumed sequence already knows its next token and may find every block cached.
    const bool fresh = s.next_token < 0;
    const int max_blocks = fresh ? (upto - 1) / block_size_ : upto / block_size_;
    got = cache_->match(tokens.data(), upto, max_blocks, &link);
  }
  const int need = blocks_for(upto, block_size_) - static_cast<int>(got.size());
  if (pool_.n_free() < need) {
    for (auto it = got.rbegin(); it != got.rend(); ++it) pool_.release(*it);
    return false;
  }
  for (int i = 0; i < need; ++i) got.push_back(pool_.allocate());
  s.blocks = std::move(got);
  s.n_cached = cache_ && use_cache ? static_cast<int>(s.blocks.size() - need) * block_size_ : 0;
  s.n_cached = std::min(s.n_cached, upto);
  s.n_chained = s.n_cached / block_size_;
  s.chain = link;
  s.target = upto;
  return true;
}

bool ReplicaScheduler::start_waiting() {
  if (waiting_.empty()) return false;
  ScheduledRequest& r = waiting_.front().request;
  const Clock::time_point since = waiting_.front().since;
  const int n = r.request.n;
  const int n_prompt = static_cast<int>(r.request.prompt_ids.size());
  std::vector<Seq*> rows;
  for (std::unique_ptr<Seq>& s : seqs_) {
    if (s->state == Seq::State::free && static_cast<int>(rows.size()) < n) rows.push_back(s.get());
  }
  if (static_cast<int>(rows.size()) < n) return false;
  // The other choices each need their own copy of a partial last prompt block.
  const int partial = n_prompt % block_size_ != 0 ? 1 : 0;
  Seq& lead = *rows[0];
  lead.req = r.request;  // (copied: choice 0 keeps the request if the blocks are not there)
  lead.generated.clear();
  lead.next_token = -1;
  // A prompt to score needs the logits of every position: no prefix cache lookup for it.
  const bool use_cache = r.request.prompt_logprobs < 0;
  if (!take_blocks(lead, n_prompt, use_cache)) return false;
  if (pool_.n_free() < (n - 1) * partial) {
    release_blocks(lead);
    return false;
  }
  if (cache_ && use_cache) {
    stats_.prefix_query_tokens += n_prompt;
    stats_.prefix_hit_tokens += lead.n_cached;
  }
  // The structured-output constraint, once for the request (each choice gets a copy). A request
  // that cannot be constrained fails alone.
  std::unique_ptr<LogitProcessor> constraint;
  try {
    constraint = make_grammar_constraint(r.request, tokenizer_, stop_ids_);
  } catch (const std::exception& e) {
    release_blocks(lead);
    for (int i = 0; i < n; ++i) {
      GenerationOutcome o;
      o.index = i;
      o.finish_reason = "error";
      o.error = e.what();
      o.prompt_tokens = n_prompt;
      o.replica = replica_;
      events_.on_finish(r.seq, std::move(o));
    }
    waiting_.pop_front();
    return true;
  }
  const uint64_t order = admitted_++;
  for (int i = 0; i < n; ++i) {
    Seq& s = *rows[i];
    if (i > 0) {
      s.req = r.request;
      s.blocks.clear();
      if (partial) s.blocks.push_back(pool_.allocate());  // reserved for the fork's copy
      s.n_cached = s.target = 0;
      s.chain = PrefixCache::Link{};
      s.n_chained = 0;
    }
    s.state = i == 0 ? Seq::State::running : Seq::State::waiting_fork;
    s.seq = r.seq;
    s.index = i;
    s.n_choices = n;
    s.order = order;
    s.recompute_pending = false;
    s.next_token = -1;
    s.position = 0;
    s.generated.clear();
    s.logprobs.clear();
    s.prompt_logprobs.clear();
    s.text.clear();
    s.streamed = 0;
    s.delta_from = 0;
    s.decode_ms.clear();
    s.max_stop = 0;
    for (const std::string& stop : s.req.stop) s.max_stop = std::max(s.max_stop, stop.size());
    SamplingParams sampling = s.req.sampling;
    sampling.seed = choice_seed(sampling.seed, i);
    s.sampler = std::make_unique<Sampler>(sample_vocab_, sampling);
    s.processors =
        make_logit_processors(s.req, sample_vocab_, constraint ? constraint->clone() : nullptr);
    if (tokenizer_) {
      s.decoder = std::make_unique<StreamDecoder>(*tokenizer_, !s.req.keep_special_text);
      // The prompt gives the decoder its context, so the text is the exact continuation (a
      // leading space of the first new word is kept: prompt + text reads as the whole).
      for (int32_t id : s.req.prompt_ids) s.decoder->push(id);
    } else {
      s.decoder.reset();
    }
    s.admitted = since;
    s.prefilled = s.first_token = s.last_token = since;
  }
  waiting_.pop_front();
  return true;
}

bool ReplicaScheduler::resume(Seq& s) {
  // A sequence preempted while decoding recomputes every position before `position` (its next
  // token is known); one preempted during its first prefill starts that prefill again.
  const int upto = s.next_token >= 0 ? s.position : static_cast<int>(s.req.prompt_ids.size());
  const bool longrope_past = recompute_at_ >= 0 && s.next_token >= 0 && upto > recompute_at_;
  // Keep a block of headroom so the resumed sequence does not preempt at once.
  if (pool_.n_free() < blocks_for(upto, block_size_) - (cache_ ? upto / block_size_ : 0) + 1 &&
      active_running() > 0) {
    return false;
  }
  // A prompt being scored is prefilled again whole (every position's logits).
  const bool scoring = s.next_token < 0 && s.req.prompt_logprobs >= 0;
  if (!take_blocks(s, longrope_past ? upto + 1 : upto, !longrope_past && !scoring)) return false;
  if (s.next_token < 0 && s.req.prompt_ids.size() % block_size_ != 0) {
    // Choice 0 of n: its siblings' blocks for the fork's copy (see preempt()).
    std::vector<Seq*> siblings;
    for (std::unique_ptr<Seq>& sib : seqs_) {
      if (sib->state == Seq::State::waiting_fork && sib->seq == s.seq)
        siblings.push_back(sib.get());
    }
    if (pool_.n_free() < static_cast<int>(siblings.size())) {
      release_blocks(s);
      return false;
    }
    for (Seq* sib : siblings) sib->blocks.assign(1, pool_.allocate());
  }
  if (longrope_past) {
    // recompute() rewrites positions [0, position] alone, with the long factors.
    s.n_cached = s.target = upto;
    s.recompute_pending = true;
  }
  s.state = Seq::State::running;
  return true;
}

int ReplicaScheduler::active_running() const {
  int n = 0;
  for (const std::unique_ptr<Seq>& s : seqs_) n += s->running();
  return n;
}

void ReplicaScheduler::preempt(Seq& s) {
  release_blocks(s);
  if (s.next_token < 0) s.prompt_logprobs.clear();  // its prefill (and scoring) starts again
  // Choice 0 preempted before its prompt's logits: its waiting siblings give back the blocks
  // they keep for the fork (resume() takes them again), so they cannot starve another request.
  if (s.next_token < 0) {
    for (std::unique_ptr<Seq>& sib : seqs_) {
      if (sib->state == Seq::State::waiting_fork && sib->seq == s.seq) release_blocks(*sib);
    }
  }
  s.state = Seq::State::preempted;
  s.awaiting = false;
  ++s.epoch;
  s.target = 0;
  ++stats_.preemptions;
}

ReplicaScheduler::Seq* ReplicaScheduler::newest_running() {
  Seq* newest = nullptr;
  for (std::unique_ptr<Seq>& s : seqs_) {
    if (!s->running() || s->blocks.empty()) continue;
    if (!newest || s->newer_than(*newest)) newest = s.get();
  }
  return newest;
}

bool ReplicaScheduler::ensure_block(Seq& s, int position) {
  while (position / block_size_ >= static_cast<int>(s.blocks.size())) {
    const int b = pool_.allocate();
    if (b >= 0) {
      s.blocks.push_back(b);
      continue;
    }
    Seq* victim = newest_running();
    if (victim == nullptr || victim == &s) {
      preempt(s);
      return false;
    }
    preempt(*victim);
  }
  return true;
}

void ReplicaScheduler::cache_full_blocks(Seq& s) {
  if (!cache_) return;
  while ((s.n_chained + 1) * block_size_ <= s.n_cached) {
    const int b = s.n_chained;
    int32_t ids[64];
    std::vector<int32_t> big;
    int32_t* p = ids;
    if (block_size_ > 64) {
      big.resize(static_cast<size_t>(block_size_));
      p = big.data();
    }
    for (int k = 0; k < block_size_; ++k) p[k] = token_at(s, b * block_size_ + k);
    s.chain = cache_->insert(s.chain, p, s.blocks[static_cast<size_t>(b)]);
    ++s.n_chained;
  }
}

void ReplicaScheduler::fork_siblings(Seq& lead, const float* logits) {
  if (lead.n_choices == 1) return;
  const int n_prompt = static_cast<int>(lead.req.prompt_ids.size());
  const int full = n_prompt / block_size_;
  cache_full_blocks(lead);
  for (std::unique_ptr<Seq>& sp : seqs_) {
    Seq& s = *sp;
    if (s.state != Seq::State::waiting_fork || s.seq != lead.seq) continue;
    std::vector<int> blocks(lead.blocks.begin(), lead.blocks.begin() + full);
    for (int b : blocks) pool_.retain(b);
    if (n_prompt % block_size_ != 0) {
      const int mine = s.blocks.at(0);
      blocks.push_back(mine);
      copies_.push_back(mine);
      copies_.push_back(lead.blocks[static_cast<size_t>(full)]);
    }
    s.blocks = std::move(blocks);
    s.n_cached = s.target = s.position = n_prompt;
    s.chain = lead.chain;
    s.n_chained = std::min(lead.n_chained, full);
    s.state = Seq::State::running;
    s.prefilled = lead.prefilled;
    s.prompt_logprobs = lead.prompt_logprobs;
    if (s.req.max_new_tokens == 0) {  // a scored prompt, nothing to generate
      finish(s, "length");
      continue;
    }
    accept_token(s, logits);
  }
}

void ReplicaScheduler::send_delta(Seq& s, bool final) {
  if (!s.req.stream) return;
  size_t upto = s.text.size();
  if (!final && s.max_stop > 1) {  // a stop string may still start in the last max_stop-1 bytes
    upto = upto > s.max_stop - 1 ? utf8_boundary(s.text, upto - (s.max_stop - 1)) : 0;
    upto = std::max(upto, s.streamed);
  }
  if (upto == s.streamed && s.delta_from == s.generated.size()) return;
  GenerationDelta d;
  d.index = s.index;
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

void ReplicaScheduler::finish(Seq& s, const char* reason, const std::string& error) {
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
  o.index = s.index;
  o.text = std::move(s.text);
  o.finish_reason = finish_reason;
  o.error = error;
  o.prompt_tokens = static_cast<int>(s.req.prompt_ids.size());
  o.token_ids = std::move(s.generated);
  o.logprobs = std::move(s.logprobs);
  if (s.req.prompt_logprobs >= 0) {
    o.prompt_ids = s.req.prompt_ids;
    o.prompt_logprobs = std::move(s.prompt_logprobs);
  }
  const Clock::time_point now = Clock::now();
  o.prefill_ms = ms_between(s.admitted, s.prefilled);
  o.ttft_ms = o.token_ids.empty() ? 0.0 : ms_between(s.admitted, s.first_token);
  o.total_ms = ms_between(s.admitted, now);
  o.decode_ms = std::move(s.decode_ms);
  o.replica = replica_;
  release_blocks(s);
  s.state = Seq::State::free;
  s.awaiting = false;
  ++s.epoch;
  s.recompute_pending = false;
  s.sampler.reset();
  s.processors.clear();
  s.decoder.reset();
  s.text.clear();
  s.generated.clear();
  s.logprobs.clear();
  s.prompt_logprobs.clear();
  s.req = GenerationRequest();
  events_.on_finish(s.seq, std::move(o));
}

void ReplicaScheduler::fail(Seq& s, const std::string& error) {
  finish(s, "error", "token " + std::to_string(s.generated.size() + 1) + ": " + error);
}

void ReplicaScheduler::accept_token(Seq& s, const float* logits, int32_t drawn) {
  // A failure here belongs to this request alone (non-finite logits, an id the tokenizer cannot
  // decode): it ends with an error and the other sequences go on. The followers need not know: the
  // sequence simply takes no more tokens, as after a stop.
  int32_t tok = -1;
  std::string piece;
  const Clock::time_point now = Clock::now();
  try {
    // Processors change a copy: logprobs below report the model's own distribution.
    if (drawn >= 0) {
      tok = drawn;
    } else {
      const float* row = logits;
      if (!s.processors.empty()) {
        std::copy(logits, logits + sample_vocab_, processed_.begin());
        for (const std::unique_ptr<LogitProcessor>& p : s.processors) {
          p->apply(processed_.data(), sample_vocab_);
        }
        row = processed_.data();
      }
      tok = s.sampler->sample(row);
    }
    for (const std::unique_ptr<LogitProcessor>& p : s.processors) p->accept(tok);
    if (s.generated.empty()) {
      s.first_token = now;
    } else {
      s.decode_ms.push_back(ms_between(s.last_token, now));
    }
    s.last_token = now;
    if ((!s.req.ignore_eos &&
         std::find(stop_ids_.begin(), stop_ids_.end(), tok) != stop_ids_.end()) ||
        std::find(s.req.stop_token_ids.begin(), s.req.stop_token_ids.end(), tok) !=
            s.req.stop_token_ids.end()) {
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

void ReplicaScheduler::score_prompt_token(Seq& s, const float* logits, int position) {
  try {
    const int32_t next = s.req.prompt_ids[static_cast<size_t>(position) + 1];
    s.prompt_logprobs.push_back(token_logprobs(logits, sample_vocab_, next, s.req.prompt_logprobs));
  } catch (const std::exception& e) {
    finish(s, "error", "prompt token " + std::to_string(position + 1) + ": " + e.what());
  }
}

ReplicaScheduler::StepRows& ReplicaScheduler::next_rows() {
  return steps_[static_cast<size_t>((steps_head_ + channel_.in_flight()) % channel_.depth())];
}

void ReplicaScheduler::send_control(int32_t cmd) {
  std::fill(plan_.begin(), plan_.begin() + kHeader, 0);
  plan_[kCmd] = cmd;
  plan_[kStopFlag] = stop_signal_() ? 1 : 0;
  if (cmd == kCmdIdle) next_rows().n_rows = 0;
  channel_.send(plan_.data());
  last_broadcast_ = Clock::now();
}

int ReplicaScheduler::table_row(Seq& s) {
  if (s.step_row < 0) {
    s.step_row = n_table_rows_;
    table_seq_[static_cast<size_t>(n_table_rows_++)] = &s;
  }
  return s.step_row;
}

bool ReplicaScheduler::samples_on_last_stage(const Seq& s, int prompt_pos) const {
  // Only the sampler decides the token: no processors (penalties, bias, grammar, min_p), no
  // logprobs to report, and not the first token of n > 1 choices (each draws from the row).
  return world_.pp() > 1 && prompt_pos < 0 && s.processors.empty() && s.req.logprobs < 0 &&
         s.req.prompt_logprobs < 0 && (s.n_choices == 1 || s.next_token >= 0);
}

void ReplicaScheduler::send_plan(int n, int n_rows, int rope_seq_len, bool sample_remotely) {
  // This step's table: one row per sequence in it, as wide as the longest (unused entries -1).
  int stride = 1;
  for (int r = 0; r < n_table_rows_; ++r) {
    stride = std::max(stride, static_cast<int>(table_seq_[static_cast<size_t>(r)]->blocks.size()));
  }
  for (int r = 0; r < n_table_rows_; ++r) {
    Seq& s = *table_seq_[static_cast<size_t>(r)];
    int32_t* row = table_.data() + static_cast<size_t>(r) * stride;
    std::fill(std::copy(s.blocks.begin(), s.blocks.end(), row), row + stride, -1);
    s.step_row = -1;
  }
  const int n_table = n_table_rows_ * stride;
  const int n_copies = static_cast<int>(copies_.size() / 2);
  // The plan, packed: header, then the arrays.
  plan_[kCmd] = kCmdStep;
  plan_[kTokens] = n;
  plan_[kLogitRows] = n_rows;
  plan_[kRopeSeqLen] = rope_seq_len;
  plan_[kTableRows] = n_table_rows_;
  plan_[kTableStride] = stride;
  plan_[kCopies] = n_copies;
  plan_[kStopFlag] = stop_signal_() ? 1 : 0;
  plan_[kSampleVocab] = sample_vocab_;
  plan_[kSampleRows] = world_.pp() > 1 ? n_rows : 0;
  int32_t* p = plan_.data() + kHeader;
  p = std::copy(ids_.begin(), ids_.begin() + n, p);
  p = std::copy(pos_.begin(), pos_.begin() + n, p);
  p = std::copy(row_of_.begin(), row_of_.begin() + n, p);
  p = std::copy(rows_.begin(), rows_.begin() + n_rows, p);
  p = std::copy(table_.begin(), table_.begin() + n_table, p);
  p = std::copy(copies_.begin(), copies_.end(), p);
  StepRows& rows = next_rows();
  for (int r = 0; r < plan_[kSampleRows]; ++r, p += kSampleSpecInts) {
    Seq* s = sample_remotely ? seqs_[static_cast<size_t>(rows.seq[r])].get() : nullptr;
    const bool remote = s != nullptr && samples_on_last_stage(*s, rows.prompt_pos[r]);
    pack_sample_spec(p, remote ? s->sampler.get() : nullptr);
  }
  rows.n_rows = n_rows;
  ++steps_sent_;
  steps_overlapped_ += channel_.in_flight() > 0;
  channel_.send(plan_.data());
  last_broadcast_ = Clock::now();
  for (int c = 0; c < n_copies; ++c) {
    engine_.copy_block(copies_[2 * static_cast<size_t>(c)],
                       copies_[2 * static_cast<size_t>(c) + 1]);
  }
  copies_.clear();
  leader_logits_ =
      engine_.forward(ids_.data(), pos_.data(), row_of_.data(), n, table_.data(), n_table_rows_,
                      stride, rows_.data(), n_rows, n_rows > 0, rope_seq_len);
  n_table_rows_ = 0;
}

PlanChannel::Reply ReplicaScheduler::take_reply(StepRows** rows) {
  *rows = &steps_[static_cast<size_t>(steps_head_)];
  steps_head_ = (steps_head_ + 1) % channel_.depth();
  const PlanChannel::Reply reply = channel_.reply(leader_logits_);
  stop_requested_ = reply.stop || stop_requested_;
  return reply;
}

void ReplicaScheduler::drain() {
  while (channel_.in_flight() > 0) collect_step();
}

const float* ReplicaScheduler::recompute(Seq& s) {
  TPI_CHECK(channel_.depth() == 1, "scheduler: a longrope recompute with steps in flight");
  // The recompute rewrites every position: a block shared with a sibling choice becomes this
  // sequence's own first (no copy needed). Without a free block the sequence waits preempted.
  for (int& b : s.blocks) {
    if (pool_.refcount(b) == 1) continue;
    const int mine = pool_.allocate();
    if (mine < 0) {
      preempt(s);
      s.recompute_pending = false;
      return nullptr;
    }
    pool_.release(b);
    b = mine;
  }
  // The sequence so far: the prompt, then every generated token (the last one, next_token, is
  // the one this step feeds at `position`).
  const int n = s.position + 1;
  const int chunk = engine_.shape().max_tokens;
  const float* logits = nullptr;
  for (int start = 0; start < n; start += chunk) {
    const int m = std::min(chunk, n - start);
    for (int k = 0; k < m; ++k) {
      ids_[k] = token_at(s, start + k);
      pos_[k] = start + k;
      row_of_[k] = table_row(s);
    }
    const bool last = start + m == n;
    rows_[0] = m - 1;
    send_plan(m, last ? 1 : 0, n, false);
    StepRows* rows = nullptr;
    logits = take_reply(&rows).logits;
  }
  s.recompute_pending = false;
  return logits;
}

void ReplicaScheduler::order_by_age(const std::function<bool(const Seq&)>& pred) {
  order_.clear();
  for (int i = 0; i < n_slots(); ++i) {
    if (pred(*seqs_[static_cast<size_t>(i)])) order_.push_back(i);
  }
  std::sort(order_.begin(), order_.end(), [&](int a, int b) {
    return seqs_[static_cast<size_t>(b)]->newer_than(*seqs_[static_cast<size_t>(a)]);
  });
}

void ReplicaScheduler::step() {
  watch_phase(Phase::step, n_steps_++);

  // Preempted sequences resume first, oldest first; new requests start when none waits.
  order_by_age([](const Seq& s) { return s.state == Seq::State::preempted; });
  bool all_resumed = true;
  for (int i : order_) {
    if (!resume(*seqs_[static_cast<size_t>(i)])) {
      all_resumed = false;
      break;
    }
  }
  while (all_resumed && start_waiting()) {
  }

  // longrope: a sequence about to feed the token at original_max_position_embeddings
  // recomputes its whole sequence alone, once (a prompt longer than that was prefilled with
  // the long factors); so does one resumed past it.
  for (int i = 0; i < n_slots() && recompute_at_ >= 0; ++i) {
    Seq& s = *seqs_[static_cast<size_t>(i)];
    if (!s.decoding() ||
        (!s.recompute_pending && (s.position != recompute_at_ ||
                                  static_cast<int>(s.req.prompt_ids.size()) > recompute_at_))) {
      continue;
    }
    if (!ensure_block(s, s.position)) continue;
    const float* logits = recompute(s);
    if (!logits) continue;
    ++s.position;
    s.n_cached = s.position;
    accept_token(s, logits);
  }

  // One more step while fewer than the channel's depth are in flight; the oldest is collected
  // when the pipeline is full or nothing else can run before its tokens are known.
  const bool sent = channel_.in_flight() < channel_.depth() && plan_step();
  if (channel_.in_flight() > 0 && (channel_.in_flight() == channel_.depth() || !sent)) {
    collect_step();
  }
}

bool ReplicaScheduler::plan_step() {
  StepRows& rows = next_rows();
  const int budget = engine_.shape().max_tokens;
  int n = 0, n_rows = 0;
  auto add_token = [&](int32_t id, int position, Seq& s) {
    ids_[n] = id;
    pos_[n] = position;
    row_of_[n] = table_row(s);
    ++n;
  };
  auto add_row = [&](int i, int prompt_pos) {
    Seq& s = *seqs_[static_cast<size_t>(i)];
    rows.seq[n_rows] = i;
    rows.prompt_pos[n_rows] = prompt_pos;
    rows.epoch[n_rows] = s.epoch;
    if (prompt_pos < 0) s.awaiting = true;  // no other step until its token is known
    rows_[n_rows++] = n - 1;
  };

  // Decode tokens first, oldest first (so the pool's last blocks go to the oldest and the
  // newest is the one preempted): one per decoding sequence (n_slots <= max_tokens), or with
  // pipeline stages this step's share of them, so the steps in flight split them evenly.
  order_by_age([](const Seq& s) { return s.decoding(); });
  const int lanes = channel_.depth() - channel_.in_flight();
  const int share = (static_cast<int>(order_.size()) + lanes - 1) / lanes;
  int taken = 0;
  for (int i : order_) {
    if (taken == share) break;
    Seq& s = *seqs_[static_cast<size_t>(i)];
    if (!s.decoding() || !ensure_block(s, s.position)) continue;
    add_token(s.next_token, s.position, s);
    add_row(i, -1);
    ++taken;
  }
  // Then prefill chunks, oldest first, with what is left of the token budget (a prefilling
  // sequence holds the blocks of its whole prefill since it started). Chunks of one prompt may be
  // in flight together: each stage runs them in order.
  order_by_age([](const Seq& s) { return s.prefilling(); });
  for (size_t o = 0; o < order_.size(); ++o) {
    const int i = order_[o];
    if (n == budget) break;
    Seq& s = *seqs_[static_cast<size_t>(i)];
    if (!s.prefilling()) continue;
    int take = std::min(budget - n, s.target - s.n_cached);
    if (s.req.prompt_logprobs >= 0 && s.next_token < 0) {
      // Scoring a prompt: every prompt token gets a logits row, so the chunk is also bounded by
      // the rows left after one for each later prefilling sequence (>= 1: n_slots <= rows).
      const int later = static_cast<int>(order_.size() - o - 1);
      take = std::min(take, engine_.shape().max_logit_rows - n_rows - later);
      if (take <= 0) continue;
      const int n_prompt = static_cast<int>(s.req.prompt_ids.size());
      for (int k = 0; k < take; ++k) {
        const int p = s.n_cached + k;
        add_token(token_at(s, p), p, s);
        if (p + 1 < n_prompt) add_row(i, p);  // this row scores prompt token p + 1
      }
      s.n_cached += take;
      if (s.n_cached == s.target) add_row(i, -1);
      continue;
    }
    for (int k = 0; k < take; ++k) add_token(token_at(s, s.n_cached + k), s.n_cached + k, s);
    s.n_cached += take;
    // The prompt's last token gives the first new one; a resumed sequence knows its next token.
    if (s.n_cached == s.target && s.next_token < 0) add_row(i, -1);
  }
  if (n == 0) return false;
  send_plan(n, n_rows, 0, true);
  return true;
}

void ReplicaScheduler::collect_step() {
  StepRows* rows = nullptr;
  const PlanChannel::Reply reply = take_reply(&rows);
  const int n_rows = rows->n_rows;
  const size_t vocab = static_cast<size_t>(engine_.config().vocab_size);
  // Each row's token drawn on the last stage (-1: none) and its logits (null: not sent).
  const float* next_row = reply.logits;
  for (int r = 0; r < n_rows; ++r) {
    const int32_t* res = reply.sampled ? reply.sampled + r * kSampleResultInts : nullptr;
    row_token_[r] = res ? res[0] : -1;
    row_logits_[r] = row_token_[r] < 0 ? next_row : nullptr;
    if (row_token_[r] < 0) next_row += vocab;
    (row_token_[r] < 0 ? rows_whole_ : rows_drawn_) += reply.sampled != nullptr;
  }
  // The sequence of row r, or null when it finished or was preempted since the step was sent.
  auto live = [&](int r) -> Seq* {
    Seq& s = *seqs_[static_cast<size_t>(rows->seq[r])];
    return s.epoch == rows->epoch[r] ? &s : nullptr;
  };
  const Clock::time_point done = Clock::now();
  for (int r = 0; r < n_rows; ++r) {  // a decoding sequence's fed token is now in the cache
    Seq* s = live(r);
    if (s == nullptr || rows->prompt_pos[r] >= 0) continue;
    s->awaiting = false;
    if (s->next_token >= 0) s->n_cached = ++s->position;
  }
  for (std::unique_ptr<Seq>& s : seqs_) {
    if (s->running()) cache_full_blocks(*s);
  }
  for (int r = 0; r < n_rows; ++r) {
    Seq* sp = live(r);
    if (sp == nullptr || !sp->running()) continue;  // moot, or it failed on an earlier row
    Seq& s = *sp;
    const float* row = row_logits_[r];
    if (row_token_[r] >= 0) {  // drawn on the last stage from this sampler's state: take it on
      uint64_t state[4];
      std::memcpy(state, reply.sampled + r * kSampleResultInts + 1, sizeof state);
      s.sampler->rng().set_state(state);
    }
    if (rows->prompt_pos[r] >= 0) {
      score_prompt_token(s, row, rows->prompt_pos[r]);
      continue;
    }
    if (s.next_token < 0) {  // a finished prefill starts after the prompt
      s.prefilled = done;
      s.position = static_cast<int>(s.req.prompt_ids.size());
      fork_siblings(s, row);
      if (s.req.max_new_tokens == 0) {  // a scored prompt, nothing to generate
        finish(s, "length");
        continue;
      }
    }
    accept_token(s, row, row_token_[r]);
  }
}

bool ReplicaScheduler::cancel(uint64_t seq) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->request.seq != seq) continue;
    const int n = it->request.request.n;
    const int n_prompt = static_cast<int>(it->request.request.prompt_ids.size());
    waiting_.erase(it);
    for (int i = 0; i < n; ++i) {
      GenerationOutcome o;
      o.index = i;
      o.finish_reason = "cancelled";
      o.prompt_tokens = n_prompt;
      o.replica = replica_;
      events_.on_finish(seq, std::move(o));
    }
    return true;
  }
  bool found = false;
  for (std::unique_ptr<Seq>& s : seqs_) {
    if (s->state == Seq::State::free || s->seq != seq) continue;
    if (s->decoder) s->decoder->reset();
    s->req.stop.clear();
    s->req.stream = false;  // no more deltas: the client is gone
    finish(*s, "cancelled");
    found = true;
  }
  return found;
}

void ReplicaScheduler::abandon_all() {
  for (std::unique_ptr<Seq>& s : seqs_) {
    release_blocks(*s);
    s->state = Seq::State::free;
    s->awaiting = false;
    ++s->epoch;  // the steps in flight are collected below, for nothing
    s->sampler.reset();
    s->processors.clear();
    s->decoder.reset();
    s->req = GenerationRequest();
  }
  waiting_.clear();
  copies_.clear();
  drain();
}

void ReplicaScheduler::idle_heartbeat() {
  drain();  // steps of sequences cancelled while they were in flight
  if (world_.replica_size() == 1) {
    stop_requested_ = stop_signal_() || stop_requested_;
    return;
  }
  if (ms_between(last_broadcast_, Clock::now()) < kHeartbeatMs) return;
  send_control(kCmdIdle);
  StepRows* rows = nullptr;
  take_reply(&rows);
}

void ReplicaScheduler::release_followers() {
  drain();
  if (released_) return;
  released_ = true;
  if (world_.pp() > 1 && steps_sent_ > 0) {
    const double pct = 100.0 * static_cast<double>(steps_overlapped_) / steps_sent_;
    char line[300];
    std::snprintf(line, sizeof line,
                  "pipeline: replica %d sent %lld step(s), %lld (%.0f%%) while another was in "
                  "flight (up to %d micro-batches); %lld token(s) drawn on the last stage, %lld "
                  "logits row(s) sent to the leader",
                  replica_, static_cast<long long>(steps_sent_),
                  static_cast<long long>(steps_overlapped_), pct, channel_.depth(),
                  static_cast<long long>(rows_drawn_), static_cast<long long>(rows_whole_));
    log_info(line);
  }
  if (world_.replica_size() == 1) return;
  send_control(kCmdDone);
}

}  // namespace tpinfer

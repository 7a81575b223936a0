// ReplicaScheduler (replica_scheduler.h): admission, the paged KV blocks of each sequence (prefix
// cache, preemption and resumption), n > 1 forks, cancellation. The steps are in
// replica_steps.cpp, what sequences produce in replica_output.cpp; the sequence in replica_seq.h.
#include "runtime/scheduler/replica_scheduler.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "runtime/engine/logit_processors.h"
#include "runtime/scheduler/grammar_constraint.h"
#include "runtime/scheduler/replica_seq.h"
#include "runtime/scheduler/request_check.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

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

}  // namespace tpinfer

// A replica's steps (ReplicaScheduler, see replica_seq.h): what runs next (resumed and new
// sequences, the decoding ones' share, prefill chunks), the plan sent to the replica and the
// leader's part of the forward, and the reply collected: tokens taken on, sequences free to run
// again. With pipeline stages up to pp steps are in flight (decode micro-batches); rows of a
// sequence that was preempted, cancelled or finished meanwhile are dropped by their epoch. Also
// the idle heartbeat and the release of the followers.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "core/watchdog.h"
#include "runtime/scheduler/replica_seq.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

// An idle leader tells its followers it is alive this often (well under any watchdog timeout).
constexpr double kHeartbeatMs = 2000.0;

}  // namespace

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
  // The plan, packed: the header, then the arrays.
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
  StepRows& rows = next_rows();
  if (world_.replica_size() > 1) {  // the body only travels to followers (none at tp 1, pp 1)
    int32_t* p = plan_.data() + kHeader;
    p = std::copy(ids_.begin(), ids_.begin() + n, p);
    p = std::copy(pos_.begin(), pos_.begin() + n, p);
    p = std::copy(row_of_.begin(), row_of_.begin() + n, p);
    p = std::copy(rows_.begin(), rows_.begin() + n_rows, p);
    p = std::copy(table_.begin(), table_.begin() + n_table, p);
    p = std::copy(copies_.begin(), copies_.end(), p);
    for (int r = 0; r < plan_[kSampleRows]; ++r, p += kSampleSpecInts) {
      Seq* s = sample_remotely ? seqs_[static_cast<size_t>(rows.seq[r])].get() : nullptr;
      const bool remote = s != nullptr && samples_on_last_stage(*s, rows.prompt_pos[r]);
      pack_sample_spec(p, remote ? s->sampler.get() : nullptr);
    }
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

// Continuous batching on one data-parallel replica: the only decode loop of the job, whatever
// the front end (a single prompt is a batch of one). The leader (tp rank 0) owns the replica's
// paged KV cache as a BlockPool: every running sequence holds a block table (a row of at most
// n_slots = batch_size rows) and grows it a block at a time. A request waits here until a row
// per choice and the blocks its prompt needs (after the part found in the prefix cache) are
// free; its prompt is prefilled in chunks, and from then on it contributes one decode token per
// step. Every step is ONE forward that mixes the decode tokens of all decoding sequences with
// prefill chunks (up to the engine's max_tokens). When the pool runs out mid-decode, the newest
// running sequence is preempted: its blocks go back to the pool, its tokens, sampler and decoder
// stay, and it is resumed later by prefilling prompt + generated again (the prefix cache keeps
// most of it). A request with n choices is prefilled once; then n-1 more sequences fork from it,
// sharing the prompt's full blocks and copying its partial last one.
// The leader sends each step's plan (ids, positions, table rows, logit rows, the step's block
// table and block copies) to the replica (PlanChannel); followers run the same forward. With
// pipeline stages the decoding sequences are split into pp micro-batches kept in flight: while
// later stages run step i the leader samples step i - 1's tokens and sends step i + 1. A sequence
// is in at most one step that samples for it; the KV it writes is ordered by the plans' order,
// the same on every stage.
// Sampling, stop ids and stop strings, log-probabilities, streaming deltas and cancellation all
// happen here, on the leader; what a request produces goes to RequestEvents.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "comm/world.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "runtime/scheduler/block_pool.h"
#include "runtime/scheduler/plan_channel.h"
#include "runtime/scheduler/prefix_cache.h"
#include "runtime/scheduler/request.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

class ReplicaScheduler {
 public:
  // stop_ids end a request (unless it asks ignore_eos); ids [0, sample_vocab) can be sampled.
  // Without a tokenizer (tests of ids alone) requests produce ids and no text.
  // stop_signal() is polled after every step on every rank of the group: true on any of them
  // makes stop_requested() true on the leader. prefix_caching: reuse cached prompt blocks (off
  // for longrope models, whose recompute rewrites a sequence's keys).
  ReplicaScheduler(Engine& engine, World& world, const Tokenizer* tokenizer,
                   std::vector<int32_t> stop_ids, int sample_vocab, int replica,
                   std::function<bool()> stop_signal, RequestEvents& events,
                   bool prefix_caching = true);
  ~ReplicaScheduler();

  int n_slots() const { return static_cast<int>(seqs_.size()); }  // rows: running sequences
  // How many more requests admit() takes now: rows neither running nor promised to a waiting
  // request. A request then waits here until its rows and blocks are free.
  int free_slots() const;
  // Requests here (running, preempted or waiting): step() has work while > 0.
  int active() const;

  // Takes a tokenized request (free_slots() must be > 0). A request for 0 new tokens needs no
  // forward and finishes at once; one that cannot fit the pool even alone ends with an error.
  void admit(ScheduledRequest request);
  // Starts what can start, then one forward over every running sequence; finished requests are
  // reported to the events.
  void step();
  // Ends every choice of request `seq` if it is here (finish_reason "cancelled").
  bool cancel(uint64_t seq);
  // A rank of this tp group was asked to stop (seen at the last step or heartbeat).
  bool stop_requested() const { return stop_requested_; }
  // Drops every request without an event (its work is lost; a rerun redoes it).
  void abandon_all();
  // While the leader has nothing to run: every few seconds tells the followers it is alive (so
  // their watchdogs see progress) and polls the group's stop signals.
  void idle_heartbeat();
  // Tells the followers that this replica is done (they return from follow_replica_leader).
  void release_followers();
  // Steps in flight now (pipeline micro-batches; 0 between steps without stages).
  int steps_in_flight() const { return channel_.in_flight(); }

  // The pool now and the counters since the start (leader).
  KvCacheStats kv_stats() const;

 private:
  struct Seq;
  using Clock = std::chrono::steady_clock;
  // Reports s as finished ("stop", "length": the decoder's held-back text is flushed and
  // streamed; "error" with its message, "cancelled": as it stands) and frees its row and blocks.
  void finish(Seq& s, const char* reason, const std::string& error = "");
  // Ends s with finish_reason "error" and the message (the request alone fails).
  void fail(Seq& s, const std::string& error);
  // Samples the token for s from its logits row (or takes `drawn`, the token the last pipeline
  // stage drew with s's sampler state; logits may then be null); reports and frees s when it
  // finished.
  void accept_token(Seq& s, const float* logits, int32_t drawn = -1);
  // Whether s's token for a row (prompt_pos: a scored prompt position, or -1) is drawn on the last
  // pipeline stage: nothing but the sampler decides it.
  bool samples_on_last_stage(const Seq& s, int prompt_pos) const;
  // Prompt logprobs (scoring): the logprob of prompt token position + 1 from the row of the token
  // at `position`, kept for the outcome.
  void score_prompt_token(Seq& s, const float* logits, int position);
  // Streams what s produced since its last delta (text held back while a stop string may
  // still match across the next piece).
  void send_delta(Seq& s, bool final);
  // Starts the waiting request at the head of the queue when its rows and blocks are free.
  bool start_waiting();
  // Gives s the blocks for positions [0, upto) (the prefix cache's first); false, holding
  // nothing new, when the pool cannot.
  bool take_blocks(Seq& s, int upto, bool use_cache);
  // Resumes a preempted sequence when its blocks are free.
  bool resume(Seq& s);
  // Frees s's blocks and keeps its tokens: it prefills them again when resumed.
  void preempt(Seq& s);
  // The newest sequence holding blocks that may be preempted, or null.
  Seq* newest_running();
  // A block for s's position p (allocating, preempting the newest when the pool is empty):
  // false when s itself was preempted.
  bool ensure_block(Seq& s, int position);
  // Choice 0 of s's request finished its prefill: its waiting siblings fork from it.
  void fork_siblings(Seq& leader, const float* logits);
  // Registers s's newly full blocks in the prefix cache.
  void cache_full_blocks(Seq& s);
  void release_blocks(Seq& s);
  int32_t token_at(const Seq& s, int position) const;
  // A step sent and not yet collected: what each of its logit rows is for.
  struct StepRows {
    int n_rows = 0;
    std::vector<int> seq;         // (max_logit_rows) the sequence of each logit row
    std::vector<int> prompt_pos;  // a scored prompt position, or -1 (sampling)
    std::vector<uint64_t>
        epoch;  // the sequence's epoch when sent: rows of an older one are dropped
  };
  // The StepRows of the step being planned (the next one sent).
  StepRows& next_rows();
  // Sends a plan with no forward (idle, done) with this rank's stop flag.
  void send_control(int32_t cmd);
  // Adds s's table as a row of this step's table (once) and returns the row.
  int table_row(Seq& s);
  // Plans one step over the sequences not waiting for a token (the decoding ones' share: an
  // even split over the steps that may still be sent) and sends it; false when there is nothing
  // to run.
  bool plan_step();
  // Sends a plan of n tokens and n_rows logit rows to the followers and runs the leader's part.
  // sample_remotely: rows may be drawn on the last stage (next_rows() says whose they are).
  void send_plan(int n, int n_rows, int rope_seq_len, bool sample_remotely);
  // The reply to the oldest step in flight, and its StepRows.
  PlanChannel::Reply take_reply(StepRows** rows);
  // Collects the oldest step: its tokens are sampled and its sequences can run again.
  void collect_step();
  // Collects every step in flight.
  void drain();
  // longrope: recomputes s's whole sequence with the long factors (see step()).
  const float* recompute(Seq& s);
  int active_running() const;  // sequences running now
  // order_: the sequences pred picks, oldest first.
  void order_by_age(const std::function<bool(const Seq&)>& pred);

  Engine& engine_;
  World& world_;
  const Tokenizer* tokenizer_;
  std::vector<int32_t> stop_ids_;
  int sample_vocab_;
  int replica_;
  std::function<bool()> stop_signal_;
  RequestEvents& events_;
  int block_size_;
  BlockPool pool_;
  std::unique_ptr<PrefixCache> cache_;  // null: prefix caching off
  KvCacheStats stats_;
  int recompute_at_ = -1;  // longrope: the position where a sequence is recomputed
  bool stop_requested_ = false;
  bool released_ = false;
  int64_t n_steps_ = 0;  // for the watchdog's "step N"
  uint64_t admitted_ = 0;
  Clock::time_point last_broadcast_;
  std::vector<std::unique_ptr<Seq>> seqs_;  // (n_slots) one per row
  struct Waiting {
    ScheduledRequest request;
    Clock::time_point since;  // admit(): the outcome's times count from here
  };
  std::deque<Waiting> waiting_;  // admitted, not started (rows or blocks lacking)
  // One step's plan, sized once (max_tokens tokens, max_logit_rows rows, n_slots table rows):
  // nothing is allocated per step.
  std::vector<int32_t> ids_, pos_, row_of_;  // (max_tokens) row_of_: the step-table row
  std::vector<int32_t> rows_;                // (max_logit_rows) batch index of each logit row
  std::vector<int32_t> row_token_;           // (max_logit_rows) collect_step: a drawn token or -1
  std::vector<const float*> row_logits_;     // (max_logit_rows) collect_step: the row's logits
  std::vector<int32_t> table_;               // (n_slots, blocks_per_seq) this step's table
  std::vector<Seq*> table_seq_;              // (n_slots) sequence of each step-table row
  int n_table_rows_ = 0, table_stride_ = 0;
  std::vector<int32_t> copies_;   // (2 n_slots) pending block copies (dst, src) for the next step
  std::vector<int> order_;        // scratch: sequences in admission order
  std::vector<int32_t> plan_;     // packed for the followers: header + the above
  std::vector<float> processed_;  // (sample_vocab) a logits row after the request's processors
  PlanChannel channel_;
  std::vector<StepRows> steps_;  // (channel depth) a ring: the steps in flight, oldest at head
  int steps_head_ = 0;
  // For the log: steps sent (with another in flight), logit rows drawn on the last stage or sent.
  int64_t steps_sent_ = 0, steps_overlapped_ = 0, rows_drawn_ = 0, rows_whole_ = 0;
  const float* leader_logits_ = nullptr;  // the leader's forward's (no stages)
};

}  // namespace tpinfer

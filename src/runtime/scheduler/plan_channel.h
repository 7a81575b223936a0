// How a replica's step plans reach its ranks, and how each step's reply comes back to the leader.
// The leader (stage 0, tp rank 0) broadcasts a plan over its tp group. With pipeline stages each
// rank then hands it on to the same tp rank of the next stage, in step order, so a stage starts
// step i + 1 as soon as it is done with step i: the leader keeps `depth` steps (micro-batches) in
// flight. Every rank ORs its own stop flag into the plan it hands on; the last stage replies to
// the leader with the OR over its tp group and the step's tokens: a row whose request needs
// nothing but its sampler is sampled there, with the leader's sampler state sent in the plan and
// the new state sent back (the same token the leader would draw, 36 bytes instead of a logits
// row); the other rows' logits go back whole. The leader posts the reply's
// receives when it sends the plan, so the last stage never waits for a leader busy with a later
// step, and a stage only ever waits on the stage before it. Without stages a step is synchronous:
// the reply's logits are the leader's own and the flags one all-reduce over the tp group.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "comm/world.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"

namespace tpinfer {

// A plan: a header, then ids[n], positions[n], table_rows[n], logit_rows[n_logit_rows],
// table[n_table_rows * table_stride], block copies (dst, src)[n_copies] and, with pipeline
// stages, a sampling spec per logit row [n_sample_rows * kSampleSpecInts], packed one after the
// other. Copies run before the forward.
enum PlanHeader {
  kCmd,
  kTokens,
  kLogitRows,
  kRopeSeqLen,
  kTableRows,
  kTableStride,
  kCopies,
  kStopFlag,     // some rank the plan has passed was asked to stop
  kSampleVocab,  // ids [0, this) can be sampled
  kSampleRows,   // rows with a sampling spec: n_logit_rows with pipeline stages, else 0
  kHeader
};
// A row's sampling spec: [mode (1: sample on the last stage, 0: send the row), temperature (f32
// bits), top_k, top_p (f32 bits), the generator's state (4 x u64)]; its result: [token id, or -1
// when the row is sent whole (mode 0, or the draw failed: the leader redoes it and reports the
// error), the generator's state after the draw].
constexpr int kSampleSpecInts = 12;
constexpr int kSampleResultInts = 9;
// Fills a spec from the sampler (null: mode 0).
void pack_sample_spec(int32_t* spec, Sampler* sampler);
constexpr int32_t kCmdDone = 0;
constexpr int32_t kCmdStep = 1;
constexpr int32_t kCmdIdle = 2;  // no forward: the leader is alive and polls the stop flags

// Ints of the largest plan of this engine shape, and of the plan whose header this is.
size_t plan_ints(const EngineShape& shape);
size_t plan_size(const int32_t* header);

class PlanChannel {
 public:
  // depth: the most step plans the leader keeps in flight (1 without pipeline stages).
  PlanChannel(World& world, Engine& engine, int depth);

  int depth() const { return depth_; }
  int in_flight() const { return n_flight_; }

  // Leader: sends a packed plan (plan[kStopFlag]: the leader's own flag) to the replica. A step or
  // idle plan gets a reply, collected oldest first by reply(); in_flight() < depth() first.
  void send(int32_t* plan);
  struct Reply {
    // (rows, vocab_size): the logits of every row (sampled null), or of the rows whose result
    // says -1, in row order. Valid until the step's slot is reused by a later send().
    const float* logits = nullptr;
    const int32_t* sampled = nullptr;  // (n_logit_rows, kSampleResultInts) or null
    bool stop = false;                 // some rank of the replica was asked to stop
  };
  // Leader: the reply to the oldest plan in flight. local_logits: the leader's own forward's
  // (used without stages, when the leader computed them).
  Reply reply(const float* local_logits);

  // Follower: the next plan (valid until the next receive), after handing it on to the next stage;
  // stop: this rank's own flag.
  const int32_t* receive(bool stop);
  // Follower, after its forward of a step or idle plan: the last stage's reply (logits: this rank's
  // forward's, non-null on tp rank 0 when the step has logit rows).
  void finish(const float* logits);

 private:
  struct Flight {
    int32_t stop = 0;  // the reply's stop flag (received into here)
    int n_rows = 0;
    std::vector<int32_t> sampled;  // the reply's results and logits (pipeline stages)
    std::vector<float> logits;
  };
  // The last stage's tp rank 0: draws the rows with mode 1 into results_ and packs the rows sent
  // whole into full_.
  void sample_rows(const float* logits);
  World& world_;
  PipeLink* pipe_;  // null without stages
  int vocab_;
  EngineShape shape_;
  int depth_;
  bool own_stop_ = false;  // pp = 1: this rank's flag for the step's all-reduce
  std::vector<Flight> flights_;
  int head_ = 0, n_flight_ = 0;
  std::vector<int32_t> plan_;         // a follower's received plan
  std::unique_ptr<Sampler> sampler_;  // the last stage's, configured per row
  std::vector<int32_t> results_;
  std::vector<float> full_;
};

// The loop of a follower (every rank of the replica but its leader): runs the plans the leader
// sends until released.
void follow_replica_leader(Engine& engine, World& world, const std::function<bool()>& stop_signal);

}  // namespace tpinfer

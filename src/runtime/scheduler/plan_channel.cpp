// PlanChannel (plan_channel.h) and the follower's loop: the leader's plans over the tp group and
// along the pipeline columns, the replies from the last stage, the stop flags with them.
#include "runtime/scheduler/plan_channel.h"

#include <algorithm>
#include <cstring>

#include "comm/mailbox.h"
#include "comm/pipe.h"
#include "core/error.h"
#include "core/watchdog.h"

namespace tpinfer {
namespace {

// Throws one line unless h is a plan this engine shape can run (a follower checks what it got).
void check_plan(const int32_t* h, const EngineShape& shape, int vocab) {
  if (h[kCmd] == kCmdDone || h[kCmd] == kCmdIdle) return;
  const int n = h[kTokens], n_rows = h[kLogitRows];
  TPI_CHECK(h[kCmd] == kCmdStep && n > 0 && n <= shape.max_tokens && n_rows >= 0 &&
                n_rows <= shape.max_logit_rows && h[kRopeSeqLen] >= 0 && h[kTableRows] > 0 &&
                h[kTableRows] <= shape.n_slots && h[kTableStride] > 0 &&
                h[kTableStride] <= shape.blocks_per_seq() && h[kCopies] >= 0 &&
                h[kCopies] <= shape.n_slots && h[kSampleVocab] > 0 && h[kSampleVocab] <= vocab &&
                (h[kSampleRows] == 0 || h[kSampleRows] == n_rows),
            "follower: malformed step plan from the leader");
}

int32_t float_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

float bits_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

}  // namespace

size_t plan_ints(const EngineShape& shape) {
  return kHeader + 3 * static_cast<size_t>(shape.max_tokens) +
         static_cast<size_t>(shape.max_logit_rows) * (1 + kSampleSpecInts) +
         static_cast<size_t>(shape.n_slots) * shape.blocks_per_seq() + 2 * shape.n_slots;
}

size_t plan_size(const int32_t* h) {
  if (h[kCmd] != kCmdStep) return kHeader;
  return kHeader + 3 * static_cast<size_t>(h[kTokens]) + h[kLogitRows] +
         static_cast<size_t>(h[kTableRows]) * h[kTableStride] +
         2 * static_cast<size_t>(h[kCopies]) +
         static_cast<size_t>(h[kSampleRows]) * kSampleSpecInts;
}

void pack_sample_spec(int32_t* spec, Sampler* sampler) {
  std::fill(spec, spec + kSampleSpecInts, 0);
  if (sampler == nullptr) return;
  const SamplingParams& p = sampler->params();
  spec[0] = 1;
  spec[1] = float_bits(p.temperature);
  spec[2] = p.top_k;
  spec[3] = float_bits(p.top_p);
  uint64_t state[4];
  sampler->rng().get_state(state);
  std::memcpy(spec + 4, state, sizeof state);
}

PlanChannel::PlanChannel(World& world, Engine& engine, int depth)
    : world_(world),
      pipe_(engine.pipe()),
      vocab_(engine.config().vocab_size),
      shape_(engine.shape()),
      depth_(pipe_ == nullptr ? 1 : std::clamp(depth, 1, kPlanSendsInFlight)),
      flights_(static_cast<size_t>(depth_)),
      plan_(plan_ints(shape_)) {
  TPI_CHECK(world.pp() == 1 || pipe_ != nullptr,
            "scheduler: pipeline stage " << world.pp_rank() << " has no link");
}

void PlanChannel::send(int32_t* plan) {
  const size_t n = plan_size(plan);
  if (world_.tp() > 1) {
    // The followers wait for the header with a non-blocking broadcast (they may wait long), and
    // a non-blocking collective only matches another: so is the root's (it completes at once).
    world_.broadcast_tp_sleepy(plan, sizeof(int32_t) * kHeader, 0, 0);
    if (n > kHeader) world_.broadcast_tp(plan + kHeader, sizeof(int32_t) * (n - kHeader));
  }
  own_stop_ = plan[kStopFlag] != 0;
  if (pipe_ != nullptr) pipe_->send_plan_next(plan, n);
  if (plan[kCmd] == kCmdDone) return;
  TPI_CHECK(n_flight_ < depth_, "scheduler: more than " << depth_ << " steps in flight");
  Flight& f = flights_[static_cast<size_t>((head_ + n_flight_++) % depth_)];
  f.n_rows = plan[kCmd] == kCmdStep ? plan[kLogitRows] : 0;
  f.stop = 0;
  if (pipe_ == nullptr) return;
  pipe_->post_reply(&f.stop, sizeof f.stop);
  if (f.n_rows > 0) {  // at most every row whole
    f.sampled.resize(static_cast<size_t>(f.n_rows) * kSampleResultInts);
    f.logits.resize(static_cast<size_t>(f.n_rows) * vocab_);
    pipe_->post_reply(f.sampled.data(), sizeof(int32_t) * f.sampled.size());
    pipe_->post_reply(f.logits.data(), sizeof(float) * f.logits.size());
  }
}

PlanChannel::Reply PlanChannel::reply(const float* local_logits) {
  TPI_CHECK(n_flight_ > 0, "scheduler: no step in flight to collect");
  Flight& f = flights_[static_cast<size_t>(head_)];
  head_ = (head_ + 1) % depth_;
  --n_flight_;
  Reply r;
  if (pipe_ == nullptr) {
    r.logits = local_logits;
    r.stop = any_in_tp(world_, own_stop_);
    return r;
  }
  pipe_->wait_reply();
  if (f.n_rows > 0) {
    pipe_->wait_reply();
    pipe_->wait_reply();
    r.sampled = f.sampled.data();
    r.logits = f.logits.data();
  }
  r.stop = f.stop != 0;
  return r;
}

const int32_t* PlanChannel::receive(bool stop) {
  const ParallelLayout& l = world_.layout();
  int32_t* h = plan_.data();
  if (l.first_stage()) {
    // The leader may have nothing to run for a long time (an idle server): wait without
    // spinning; its heartbeats keep this wait well inside the watchdog's timeout.
    world_.broadcast_tp_sleepy(h, sizeof(int32_t) * kHeader);
    check_plan(h, shape_, vocab_);
    const size_t n = plan_size(h);
    if (n > kHeader) world_.broadcast_tp(h + kHeader, sizeof(int32_t) * (n - kHeader));
  } else {
    const size_t got = pipe_->recv_plan_prev(h, plan_.size());
    TPI_CHECK(got >= kHeader,
              "follower: malformed step plan from pipeline stage " << l.pp_rank - 1);
    check_plan(h, shape_, vocab_);
    TPI_CHECK(got == plan_size(h),
              "follower: malformed step plan from pipeline stage " << l.pp_rank - 1);
  }
  own_stop_ = stop;
  if (stop) h[kStopFlag] = 1;
  if (pipe_ != nullptr && !l.last_stage()) pipe_->send_plan_next(h, plan_size(h));
  return h;
}

void PlanChannel::finish(const float* logits) {
  if (pipe_ == nullptr) {
    any_in_tp(world_, own_stop_);
    return;
  }
  const ParallelLayout& l = world_.layout();
  if (!l.last_stage()) return;  // the flags went on with the plan
  const int32_t stop = any_in_tp(world_, plan_[kStopFlag] != 0) ? 1 : 0;
  if (l.tp_rank != 0) return;
  pipe_->send_reply(&stop, sizeof stop);
  const int n_rows = plan_[kCmd] == kCmdStep ? plan_[kLogitRows] : 0;
  if (n_rows == 0) return;
  TPI_CHECK(logits != nullptr, "pipeline: the last stage has no logits to send");
  sample_rows(logits);
  pipe_->send_reply(results_.data(), sizeof(int32_t) * results_.size());
  pipe_->send_reply(full_.data(), sizeof(float) * full_.size());
}

void PlanChannel::sample_rows(const float* logits) {
  const int32_t* h = plan_.data();
  const int n_rows = h[kLogitRows];
  const int32_t* specs = h + plan_size(h) - static_cast<size_t>(h[kSampleRows]) * kSampleSpecInts;
  results_.assign(static_cast<size_t>(n_rows) * kSampleResultInts, 0);
  full_.clear();
  for (int r = 0; r < n_rows; ++r) {
    const float* row = logits + static_cast<size_t>(r) * vocab_;
    int32_t* out = results_.data() + static_cast<size_t>(r) * kSampleResultInts;
    out[0] = -1;
    const int32_t* spec = specs + static_cast<size_t>(r) * kSampleSpecInts;
    if (h[kSampleRows] > 0 && spec[0] == 1) {
      try {
        const SamplingParams params(bits_float(spec[1]), spec[2], bits_float(spec[3]), 0);
        if (!sampler_) sampler_ = std::make_unique<Sampler>(h[kSampleVocab], params);
        sampler_->set_params(params);
        uint64_t state[4];
        std::memcpy(state, spec + 4, sizeof state);
        sampler_->rng().set_state(state);
        out[0] = sampler_->sample(row);
        sampler_->rng().get_state(state);
        std::memcpy(out + 1, state, sizeof state);
      } catch (const std::exception&) {
        out[0] = -1;  // the leader draws from the whole row and reports the error
      }
    }
    if (out[0] < 0) full_.insert(full_.end(), row, row + vocab_);
  }
}

void follow_replica_leader(Engine& engine, World& world, const std::function<bool()>& stop_signal) {
  PlanChannel channel(world, engine, 1);
  const ShardDims& dims = engine.dims();
  const bool sends_logits = dims.pp > 1 && dims.last_stage() && dims.tp_rank == 0;
  for (int64_t n_steps = 0;; ++n_steps) {
    watch_phase(Phase::step, n_steps);
    const int32_t* h = channel.receive(stop_signal());
    if (h[kCmd] == kCmdDone) return;
    if (h[kCmd] == kCmdIdle) {
      channel.finish(nullptr);
      continue;
    }
    const int n = h[kTokens], n_rows = h[kLogitRows], n_table = h[kTableRows] * h[kTableStride];
    const int32_t* ids = h + kHeader;
    const int32_t* logit_rows = ids + 3 * n;
    const int32_t* table = logit_rows + n_rows;
    const int32_t* copies = table + n_table;
    for (int c = 0; c < h[kCopies]; ++c) engine.copy_block(copies[2 * c], copies[2 * c + 1]);
    const float* logits =
        engine.forward(ids, ids + n, ids + 2 * n, n, table, h[kTableRows], h[kTableStride],
                       logit_rows, n_rows, sends_logits && n_rows > 0, h[kRopeSeqLen]);
    channel.finish(logits);
  }
}

}  // namespace tpinfer

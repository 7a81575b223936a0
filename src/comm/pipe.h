// The data plane of pipeline parallelism: point-to-point transfers between the stages of one
// replica, rank to rank along a pipeline column (the same dp and tp rank on every stage). A
// stage's activations go to the same tp rank of the next stage, on backend memory, in order with
// the backend's ops: MPI on the CPU backend (staged through the host when the memory is not the
// host's), NCCL send/recv on the CUDA backend's stream. The last stage's logits go, on the host,
// to the first stage (the replica leader samples them). The host side also carries the replica's
// control plane along the column: step plans forward, stage to stage, and each step's reply
// (stop flags, logits) back to the leader, which posts its receives when it sends the plan, so a
// stage never waits on the leader while the leader waits on a stage. Every wait is a named
// watchdog wait.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace tpinfer {

class Backend;
class World;

class PipeLink {
 public:
  virtual ~PipeLink() = default;
  virtual std::string name() const = 0;
  // Backend memory: to the next stage / from the previous one (same tp rank).
  virtual void send_next(const void* buf, size_t bytes) = 0;
  virtual void recv_prev(void* buf, size_t bytes) = 0;
  // Bytes this rank has sent to other stages (activations and logits), for the metrics.
  virtual size_t bytes_sent() const = 0;

  // The control plane (host memory, MPI on the pipeline column, whatever the backend).
  // A step plan to the next stage, without waiting for it to be received (the link keeps a copy
  // until it is; at most kPlanSendsInFlight plans are in flight).
  virtual void send_plan_next(const int32_t* plan, size_t n_ints) = 0;
  // The next plan from the previous stage (at most max_ints ints; returns how many). Spins for
  // 2 ms, then sleeps between tests: an idle server's followers wait here for long.
  virtual size_t recv_plan_prev(int32_t* plan, size_t max_ints) = 0;
  // A step's reply (host memory, last stage -> first stage of this column: stop flags, draws,
  // logits): sent in order (send_reply blocks until received) and received into buffers posted
  // in that same order (post_reply, then wait_reply for the oldest posted).
  virtual void send_reply(const void* host, size_t bytes) = 0;
  virtual void post_reply(void* host, size_t bytes) = 0;
  virtual void wait_reply() = 0;
};

// Plan sends a link keeps in flight before the oldest must have been received; replies posted at
// once (a step's stop flags, draws and logits) are at most three times that.
constexpr int kPlanSendsInFlight = 8;

// The host transfers (MPI on the pipeline column) and the byte count, for both implementations.
class PipeLinkBase : public PipeLink {
 public:
  size_t bytes_sent() const override { return sent_; }
  void send_plan_next(const int32_t* plan, size_t n_ints) override;
  size_t recv_plan_prev(int32_t* plan, size_t max_ints) override;
  void send_reply(const void* host, size_t bytes) override;
  void post_reply(void* host, size_t bytes) override;
  void wait_reply() override;

 protected:
  explicit PipeLinkBase(World& world);
  ~PipeLinkBase() override;
  World& world_;
  size_t sent_ = 0;
  // The plan sends in flight and the posted reply receives (MPI requests: pipe.cpp).
  struct Requests;
  std::unique_ptr<Requests> requests_;
  // The watchdog's names of the waits, e.g. "a receive of activations from pipeline stage 0 of
  // 2 (rank 1)": built once (the watchdog thread reads them while a wait lasts).
  std::string wait_send_next_, wait_recv_prev_, wait_send_first_, wait_recv_last_, wait_plan_;
};

// nullptr when pp = 1. kind: the tp communicator's kind (nccl -> NCCL send/recv, else MPI).
std::unique_ptr<PipeLink> make_pipe_link(CommKind kind, World& world, Backend& backend);

}  // namespace tpinfer

// The data plane of pipeline parallelism: point-to-point transfers between the stages of one
// replica, rank to rank along a pipeline column (the same dp and tp rank on every stage). A
// stage's activations go to the same tp rank of the next stage, on backend memory, in order with
// the backend's ops: MPI on the CPU backend (staged through the host when the memory is not the
// host's), NCCL send/recv on the CUDA backend's stream. The last stage's logits go, on the host,
// to the first stage (the replica leader samples them). Every wait is a named watchdog wait.
#pragma once

#include <cstddef>
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
  // Host memory, over MPI whatever the backend: last stage -> first stage of this column.
  virtual void send_to_first(const void* host, size_t bytes) = 0;
  virtual void recv_from_last(void* host, size_t bytes) = 0;
  // Bytes this rank has sent to other stages (activations and logits), for the metrics.
  virtual size_t bytes_sent() const = 0;
};

// The host transfers (MPI on the pipeline column) and the byte count, for both implementations.
class PipeLinkBase : public PipeLink {
 public:
  void send_to_first(const void* host, size_t bytes) override;
  void recv_from_last(void* host, size_t bytes) override;
  size_t bytes_sent() const override { return sent_; }

 protected:
  explicit PipeLinkBase(World& world);
  World& world_;
  size_t sent_ = 0;
  // The watchdog's names of the waits, e.g. "a receive of activations from pipeline stage 0 of
  // 2 (rank 1)": built once (the watchdog thread reads them while a wait lasts).
  std::string wait_send_next_, wait_recv_prev_, wait_send_first_, wait_recv_last_;
};

// nullptr when pp = 1. kind: the tp communicator's kind (nccl -> NCCL send/recv, else MPI).
std::unique_ptr<PipeLink> make_pipe_link(CommKind kind, World& world, Backend& backend);

}  // namespace tpinfer

// The MPI pipeline link (CPU backend, or any backend with comm: mpi) and the host transfers
// every link shares. Activations travel as MPI_BYTE on the pipeline column's communicator, whose
// rank i is stage i; when the backend's memory is not the host's they are staged through it.
#include "comm/pipe.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "comm/mpi_check.h"
#include "comm/world.h"
#include "core/error.h"
#include "core/watchdog.h"

#if TPINFER_HAVE_CUDA
#include "comm/nccl/nccl_factory.h"
#endif

namespace tpinfer {
namespace {

constexpr int kTagActivations = 7001;
constexpr int kTagPlan = 7003;
constexpr int kTagReply = 7004;

MPI_Comm pipe_comm(World& w) {
  return *static_cast<MPI_Comm*>(w.pipe_comm_handle());
}

// MPI counts are int: long transfers go in pieces of at most 1 GiB.
constexpr size_t kMaxPiece = size_t{1} << 30;

void send_bytes(const void* buf, size_t bytes, int to, int tag, MPI_Comm comm) {
  const char* p = static_cast<const char*>(buf);
  for (size_t off = 0; off < bytes || off == 0; off += kMaxPiece) {
    const int n = static_cast<int>(std::min(kMaxPiece, bytes - off));
    MPI_CHECK(MPI_Send(p + off, n, MPI_BYTE, to, tag, comm));
    if (bytes == 0) break;
  }
}

void recv_bytes(void* buf, size_t bytes, int from, int tag, MPI_Comm comm) {
  char* p = static_cast<char*>(buf);
  for (size_t off = 0; off < bytes || off == 0; off += kMaxPiece) {
    const int n = static_cast<int>(std::min(kMaxPiece, bytes - off));
    MPI_CHECK(MPI_Recv(p + off, n, MPI_BYTE, from, tag, comm, MPI_STATUS_IGNORE));
    if (bytes == 0) break;
  }
}

class MpiPipeLink final : public PipeLinkBase {
 public:
  MpiPipeLink(World& world, Backend& backend)
      : PipeLinkBase(world), backend_(backend), host_(backend.host_accessible()) {}
  std::string name() const override { return "mpi"; }

  void send_next(const void* buf, size_t bytes) override {
    const ParallelLayout& l = world_.layout();
    WatchWait wait(wait_send_next_.c_str(), l.next_stage_rank());
    const void* src = buf;
    if (!host_) {
      staging_.resize(bytes);
      backend_.copy_to_host(staging_.data(), buf, bytes);
      src = staging_.data();
    } else {
      backend_.synchronize();
    }
    send_bytes(src, bytes, l.pp_rank + 1, kTagActivations, pipe_comm(world_));
    sent_ += bytes;
  }

  void recv_prev(void* buf, size_t bytes) override {
    const ParallelLayout& l = world_.layout();
    WatchWait wait(wait_recv_prev_.c_str(), l.prev_stage_rank());
    if (host_) {
      backend_.synchronize();
      recv_bytes(buf, bytes, l.pp_rank - 1, kTagActivations, pipe_comm(world_));
      return;
    }
    staging_.resize(bytes);
    recv_bytes(staging_.data(), bytes, l.pp_rank - 1, kTagActivations, pipe_comm(world_));
    backend_.copy_to_device(buf, staging_.data(), bytes);
  }

 private:
  Backend& backend_;
  bool host_;
  std::vector<char> staging_;
};

// Waits for `req`: spins for the first 2 ms (a busy pipeline hands the next plan on within a
// step), then sleeps between tests (an idle server).
void wait_sleepy(MPI_Request* req, MPI_Status* status) {
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
  for (int done = 0;;) {
    MPI_CHECK(MPI_Test(req, &done, status));
    if (done) return;
    if (std::chrono::steady_clock::now() > spin_until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
}

}  // namespace

struct PipeLinkBase::Requests {
  static constexpr int kReplies = 3 * kPlanSendsInFlight;  // flags, draws, logits
  MPI_Request plan_sends[kPlanSendsInFlight];
  std::vector<int32_t> plans[kPlanSendsInFlight];  // what each send in flight sends
  int plan_next = 0;
  MPI_Request replies[kReplies];
  int reply_head = 0, n_replies = 0;
  Requests() {
    std::fill(std::begin(plan_sends), std::end(plan_sends), MPI_REQUEST_NULL);
    std::fill(std::begin(replies), std::end(replies), MPI_REQUEST_NULL);
  }
};

PipeLinkBase::~PipeLinkBase() {
  // A link closed with transfers pending (a job ending on an error): they are abandoned, not
  // waited for; a peer that is gone would never match them.
  for (MPI_Request& r : requests_->plan_sends) {
    if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
  }
  for (MPI_Request& r : requests_->replies) {
    if (r == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&r);
    MPI_Request_free(&r);
  }
}

PipeLinkBase::PipeLinkBase(World& world) : world_(world), requests_(std::make_unique<Requests>()) {
  // The watchdog adds "from rank N" (the peer) to these.
  const ParallelLayout& l = world.layout();
  auto stage = [&](int s) {
    return " pipeline stage " + std::to_string(s) + " of " + std::to_string(l.pp);
  };
  wait_send_next_ = "a send of activations to" + stage(l.pp_rank + 1);
  wait_recv_prev_ = "a receive of activations from" + stage(l.pp_rank - 1);
  wait_send_first_ = "a send of logits to" + stage(0);
  wait_recv_last_ = "a receive of logits from" + stage(l.pp - 1);
  wait_plan_ = "a receive of the next step plan from" + stage(l.pp_rank - 1);
}

void PipeLinkBase::send_plan_next(const int32_t* plan, size_t n_ints) {
  const ParallelLayout& l = world_.layout();
  Requests& r = *requests_;
  MPI_Request& slot = r.plan_sends[r.plan_next];
  std::vector<int32_t>& copy = r.plans[r.plan_next];
  r.plan_next = (r.plan_next + 1) % kPlanSendsInFlight;
  if (slot != MPI_REQUEST_NULL) {  // the send kPlanSendsInFlight plans ago: long received
    WatchWait wait(wait_send_next_.c_str(), l.next_stage_rank());
    MPI_CHECK(MPI_Wait(&slot, MPI_STATUS_IGNORE));
  }
  copy.assign(plan, plan + n_ints);
  MPI_CHECK(MPI_Isend(copy.data(), static_cast<int>(n_ints), MPI_INT32_T, l.pp_rank + 1, kTagPlan,
                      pipe_comm(world_), &slot));
}

size_t PipeLinkBase::recv_plan_prev(int32_t* plan, size_t max_ints) {
  const ParallelLayout& l = world_.layout();
  WatchWait wait(wait_plan_.c_str(), l.prev_stage_rank());
  MPI_Request req;
  MPI_Status status;
  MPI_CHECK(MPI_Irecv(plan, static_cast<int>(max_ints), MPI_INT32_T, l.pp_rank - 1, kTagPlan,
                      pipe_comm(world_), &req));
  wait_sleepy(&req, &status);
  int count = 0;
  MPI_CHECK(MPI_Get_count(&status, MPI_INT32_T, &count));
  return static_cast<size_t>(count);
}

void PipeLinkBase::send_reply(const void* host, size_t bytes) {
  const ParallelLayout& l = world_.layout();
  WatchWait wait(wait_send_first_.c_str(), l.rank_of(l.dp_rank, 0, l.tp_rank));
  send_bytes(host, bytes, 0, kTagReply, pipe_comm(world_));
  sent_ += bytes;
}

void PipeLinkBase::post_reply(void* host, size_t bytes) {
  Requests& r = *requests_;
  TPI_CHECK(r.n_replies < Requests::kReplies && bytes <= kMaxPiece,
            "pipeline: more than " << Requests::kReplies << " replies posted, or one of " << bytes
                                   << " bytes");
  MPI_Request& slot = r.replies[(r.reply_head + r.n_replies++) % Requests::kReplies];
  MPI_CHECK(MPI_Irecv(host, static_cast<int>(bytes), MPI_BYTE, world_.pp() - 1, kTagReply,
                      pipe_comm(world_), &slot));
}

void PipeLinkBase::wait_reply() {
  Requests& r = *requests_;
  TPI_CHECK(r.n_replies > 0, "pipeline: waiting for a reply that was never posted");
  const ParallelLayout& l = world_.layout();
  WatchWait wait(wait_recv_last_.c_str(), l.rank_of(l.dp_rank, l.pp - 1, l.tp_rank));
  MPI_CHECK(MPI_Wait(&r.replies[r.reply_head], MPI_STATUS_IGNORE));
  r.reply_head = (r.reply_head + 1) % Requests::kReplies;
  --r.n_replies;
}

std::unique_ptr<PipeLink> make_pipe_link(CommKind kind, World& world, Backend& backend) {
  if (world.pp() == 1) return nullptr;
  if (kind == CommKind::nccl) {
#if TPINFER_HAVE_CUDA
    return make_nccl_pipe_link(world, backend);
#else
    TPI_FAIL(
        "comm 'nccl' was requested but this tpinfer was built without CUDA/NCCL; use "
        "comm: mpi");
#endif
  }
  return std::make_unique<MpiPipeLink>(world, backend);
}

}  // namespace tpinfer

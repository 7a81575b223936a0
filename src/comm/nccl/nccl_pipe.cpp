// The NCCL pipeline link: activations between the stages of a replica with ncclSend / ncclRecv
// on the CUDA backend's stream (ordered with the layers around them, no host round trip). One
// NCCL communicator per pipeline column, bootstrapped like the tp one (stage 0 makes the unique
// id, an MPI broadcast over the column hands it out, World::agree after each step).
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "comm/mpi_check.h"
#include "comm/nccl/nccl_factory.h"
#include "comm/world.h"
#include "core/error.h"
#include "core/watchdog.h"

namespace tpinfer {
namespace {

std::string pipe_nccl_message(ncclResult_t r, const char* what, const World& world) {
  return std::string("NCCL error: ") + what + " failed: " + ncclGetErrorString(r) + " [pipeline " +
         world.layout().describe_stage(world.pp_rank()) + ", " + cuda_error_context() + "]";
}

class NcclPipeLink final : public PipeLinkBase {
 public:
  NcclPipeLink(World& world, CudaBackend& backend) : PipeLinkBase(world), backend_(backend) {
    CUDA_CHECK(cudaSetDevice(backend.device()));
    const ParallelLayout& l = world.layout();
    ncclUniqueId id{};
    std::string error;
    ncclResult_t r = ncclSuccess;
    if (l.first_stage()) {
      r = ncclGetUniqueId(&id);
      if (r != ncclSuccess) error = pipe_nccl_message(r, "ncclGetUniqueId", world);
    }
    world.agree(r == ncclSuccess, error);
    MPI_CHECK(
        MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, *static_cast<MPI_Comm*>(world.pipe_comm_handle())));
    r = ncclCommInitRank(&comm_, l.pp, id, l.pp_rank);
    if (r != ncclSuccess) {
      error = pipe_nccl_message(r, "ncclCommInitRank (pipeline column)", world);
      comm_ = nullptr;
    }
    world.agree(r == ncclSuccess, error);
  }

  ~NcclPipeLink() override {
    if (comm_ == nullptr) return;
    if (cudaStreamSynchronize(backend_.stream()) != cudaSuccess) {
      std::fprintf(stderr, "warning: the CUDA stream failed before the pipeline link closed\n");
    }
    const ncclResult_t r = ncclCommDestroy(comm_);
    if (r != ncclSuccess) {
      std::fprintf(stderr, "warning: %s\n",
                   pipe_nccl_message(r, "ncclCommDestroy (pipeline column)", world_).c_str());
    }
  }

  std::string name() const override { return "nccl"; }

  void send_next(const void* buf, size_t bytes) override {
    WatchWait wait(wait_send_next_.c_str(), world_.layout().next_stage_rank());
    check(ncclSend(buf, bytes, ncclInt8, world_.pp_rank() + 1, comm_, backend_.stream()),
          "ncclSend (activations)");
    sent_ += bytes;
  }

  void recv_prev(void* buf, size_t bytes) override {
    WatchWait wait(wait_recv_prev_.c_str(), world_.layout().prev_stage_rank());
    check(ncclRecv(buf, bytes, ncclInt8, world_.pp_rank() - 1, comm_, backend_.stream()),
          "ncclRecv (activations)");
  }

 private:
  void check(ncclResult_t r, const char* what) {
    if (r != ncclSuccess) throw Error(pipe_nccl_message(r, what, world_));
  }

  CudaBackend& backend_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<PipeLink> make_nccl_pipe_link(World& world, Backend& backend) {
  CudaBackend* cuda = as_cuda_backend(backend);
  world.agree(cuda != nullptr,
              std::string("comm: nccl needs backend: cuda (this rank has backend: ") +
                  backend_kind_name(backend.kind()) + "); use comm: mpi with the CPU backend");
  return std::make_unique<NcclPipeLink>(world, *cuda);
}

}  // namespace tpinfer

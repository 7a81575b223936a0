// The NCCL communicator: device-buffer collectives of one tensor-parallel group, enqueued on the
// CUDA backend's stream, so they order with the ops around them and are captured into the
// decode-step graph like any kernel. Bootstrap: tp-rank 0 makes the unique id, World broadcasts
// it over the group's MPI communicator, every rank joins with ncclCommInitRank; World::agree
// after each step keeps one rank's failure from leaving the others waiting.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "comm/communicator.h"
#include "comm/nccl/nccl_factory.h"
#include "comm/world.h"
#include "core/error.h"

namespace tpinfer {
namespace {

std::string nccl_message(ncclResult_t r, const char* stmt, const char* file, int line,
                         ncclComm_t comm, const World* world) {
  std::ostringstream os;
  os << "NCCL error: " << stmt << " failed: " << ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') os << " (" << last << ")";
  const char* base = file;
  for (const char* p = file; *p != '\0'; ++p) {
    if (std::string_view(p).substr(0, 5) == "/src/") base = p + 1;
  }
  os << " at " << base << ":" << line << " [";
  if (world != nullptr) os << "tp rank " << world->tp_rank() << " of " << world->tp() << ", ";
  os << cuda_error_context() << "]";
  return os.str();
}

#define NCCL_CHECK(stmt)                                                                           \
  do {                                                                                             \
    const ncclResult_t tpi_nccl_r_ = (stmt);                                                       \
    if (tpi_nccl_r_ != ncclSuccess)                                                                \
      throw ::tpinfer::Error(nccl_message(tpi_nccl_r_, #stmt, __FILE__, __LINE__, comm_, world_)); \
  } while (0)

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32:
      return ncclFloat32;
    case DType::f16:
      return ncclFloat16;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i8:
      return ncclInt8;
  }
  TPI_FAIL("nccl: unknown dtype");
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(World& world, CudaBackend& backend)
      : world_(&world), backend_(backend), rank_(world.tp_rank()), size_(world.tp()) {
    set_cuda_error_rank(world.rank());
    CUDA_CHECK(cudaSetDevice(backend.device()));  // NCCL binds the current device
    ncclUniqueId id{};
    std::string error;
    bool ok = true;
    if (rank_ == 0) {
      const ncclResult_t r = ncclGetUniqueId(&id);
      if (r != ncclSuccess) {
        ok = false;
        error = nccl_message(r, "ncclGetUniqueId(&id)", __FILE__, __LINE__, nullptr, world_);
      }
    }
    world.agree(ok, error);
    world.broadcast_tp(&id, sizeof(id), 0);
    const ncclResult_t r = ncclCommInitRank(&comm_, size_, id, rank_);
    if (r != ncclSuccess) {
      error = nccl_message(r, "ncclCommInitRank(&comm_, size_, id, rank_)", __FILE__, __LINE__,
                           nullptr, world_);
      comm_ = nullptr;
    }
    world.agree(r == ncclSuccess, error);
  }

  ~NcclCommunicator() override {
    if (comm_ == nullptr) return;
    try {
      // A captured graph holds this communicator's kernels: drop it before the communicator.
      backend_.release_graph();
      CUDA_CHECK(cudaStreamSynchronize(backend_.stream()));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: %s\n", e.what());
    }
    const ncclResult_t r = ncclCommDestroy(comm_);
    if (r != ncclSuccess) {
      std::fprintf(
          stderr, "warning: %s\n",
          nccl_message(r, "ncclCommDestroy(comm_)", __FILE__, __LINE__, nullptr, world_).c_str());
    }
  }

  std::string name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool capturable() const override { return true; }

  void all_reduce_sum(void* buf, size_t count, DType dtype) override {
    if (count == 0) return;
    NCCL_CHECK(ncclAllReduce(buf, buf, count, nccl_type(dtype), ncclSum, comm_, backend_.stream()));
  }

  void all_gather(void* recv, const void* send, size_t count, DType dtype) override {
    if (count == 0) return;
    NCCL_CHECK(ncclAllGather(send, recv, count, nccl_type(dtype), comm_, backend_.stream()));
  }

 private:
  World* world_;
  CudaBackend& backend_;
  int rank_;
  int size_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(World& world, Backend& backend) {
  CudaBackend* cuda = as_cuda_backend(backend);
  // Every rank must reach the collective agree() calls, so a wrong backend is agreed on too.
  world.agree(cuda != nullptr,
              std::string("comm: nccl needs backend: cuda (this rank has backend: ") +
                  backend_kind_name(backend.kind()) + "); use comm: mpi with the CPU backend");
  return std::make_unique<NcclCommunicator>(world, *cuda);
}

}  // namespace tpinfer

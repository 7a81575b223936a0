// The null and MPI communicators, and make_communicator. The null one (tp = 1) gathers with a
// backend copy on the backend's stream. The MPI one reduces host buffers in place; when the
// backend's memory is not host-accessible (CUDA ranks sharing a GPU, the guarded CPU test mode)
// it stages through host memory with backend copies and sums in fp32, so every dtype reduces the
// same way.
#include "comm/communicator.h"

#include <mpi.h>

#include <cstring>
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

class NullCommunicator final : public Communicator {
 public:
  explicit NullCommunicator(Backend& backend) : backend_(backend) {}
  std::string name() const override { return "null"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  bool capturable() const override { return true; }
  void all_reduce_sum(void*, size_t, DType) override {}
  void all_gather(void* recv, const void* send, size_t count, DType dtype) override {
    backend_.copy_device(recv, send, count * dtype_size(dtype));
  }

 private:
  Backend& backend_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(World& world, Backend& backend)
      : comm_(*static_cast<MPI_Comm*>(world.tp_comm_handle())),
        backend_(backend),
        host_(backend.host_accessible()) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool capturable() const override { return false; }  // stages through the host

  void all_reduce_sum(void* buf, size_t count, DType dtype) override {
    WatchWait wait("an all-reduce (MPI) over the tp group");
    if (host_ && dtype == DType::f32) {
      MPI_CHECK(
          MPI_Allreduce(MPI_IN_PLACE, buf, static_cast<int>(count), MPI_FLOAT, MPI_SUM, comm_));
      return;
    }
    // Stage: device -> host f32 -> reduce -> device.
    stage_in(buf, count, dtype);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, staging_f32_.data(), static_cast<int>(count), MPI_FLOAT,
                            MPI_SUM, comm_));
    stage_out(buf, count, dtype);
  }

  void all_gather(void* recv, const void* send, size_t count, DType dtype) override {
    WatchWait wait("an all-gather (MPI) over the tp group");
    const size_t bytes = count * dtype_size(dtype);
    if (host_) {
      MPI_CHECK(MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, recv,
                              static_cast<int>(bytes), MPI_BYTE, comm_));
      return;
    }
    staging_bytes_.resize(bytes * (size_ + 1));
    backend_.copy_to_host(staging_bytes_.data(), send, bytes);
    MPI_CHECK(MPI_Allgather(staging_bytes_.data(), static_cast<int>(bytes), MPI_BYTE,
                            staging_bytes_.data() + bytes, static_cast<int>(bytes), MPI_BYTE,
                            comm_));
    backend_.copy_to_device(recv, staging_bytes_.data() + bytes, bytes * size_);
  }

 private:
  void stage_in(const void* buf, size_t count, DType dtype) {
    staging_f32_.resize(count);
    staging_bytes_.resize(count * dtype_size(dtype));
    backend_.synchronize();
    backend_.copy_to_host(staging_bytes_.data(), buf, count * dtype_size(dtype));
    const auto* u16 = reinterpret_cast<const uint16_t*>(staging_bytes_.data());
    for (size_t i = 0; i < count; ++i) {
      switch (dtype) {
        case DType::f32:
          std::memcpy(&staging_f32_[i], staging_bytes_.data() + 4 * i, 4);
          break;
        case DType::bf16:
          staging_f32_[i] = bf16_to_f32(u16[i]);
          break;
        case DType::f16:
          staging_f32_[i] = f16_to_f32(u16[i]);
          break;
        case DType::i32:
        case DType::i8:
          TPI_FAIL("all_reduce_sum: " << dtype_name(dtype) << " is not supported");
      }
    }
  }
  void stage_out(void* buf, size_t count, DType dtype) {
    auto* u16 = reinterpret_cast<uint16_t*>(staging_bytes_.data());
    for (size_t i = 0; i < count; ++i) {
      switch (dtype) {
        case DType::f32:
          std::memcpy(staging_bytes_.data() + 4 * i, &staging_f32_[i], 4);
          break;
        case DType::bf16:
          u16[i] = f32_to_bf16(staging_f32_[i]);
          break;
        case DType::f16:
          u16[i] = f32_to_f16(staging_f32_[i]);
          break;
        case DType::i32:
        case DType::i8:
          break;
      }
    }
    backend_.copy_to_device(buf, staging_bytes_.data(), count * dtype_size(dtype));
  }

  MPI_Comm comm_;
  Backend& backend_;
  bool host_;
  int rank_ = 0, size_ = 1;
  std::vector<float> staging_f32_;
  std::vector<char> staging_bytes_;
};

}  // namespace

const char* comm_kind_name(CommKind k) {
  switch (k) {
    case CommKind::null:
      return "null";
    case CommKind::mpi:
      return "mpi";
    case CommKind::nccl:
      return "nccl";
  }
  return "?";
}

std::unique_ptr<Communicator> make_single_rank_communicator(Backend& backend) {
  return std::make_unique<NullCommunicator>(backend);
}

std::unique_ptr<Communicator> make_communicator(CommKind kind, World& world, Backend& backend) {
  switch (kind) {
    case CommKind::null:
      TPI_CHECK(world.tp() == 1, "the null communicator needs tp=1, found tp=" << world.tp());
      return make_single_rank_communicator(backend);
    case CommKind::mpi:
      return std::make_unique<MpiCommunicator>(world, backend);
    case CommKind::nccl:
#if TPINFER_HAVE_CUDA
      TPI_CHECK(backend.kind() == BackendKind::cuda, "comm 'nccl' needs the cuda backend (found "
                                                         << backend_kind_name(backend.kind())
                                                         << "); use comm: mpi");
      return make_nccl_communicator(world, backend);
#else
      TPI_FAIL(
          "comm 'nccl' was requested but this tpinfer was built without CUDA/NCCL; use "
          "comm: mpi");
#endif
  }
  TPI_FAIL("unknown communicator kind");
}

}  // namespace tpinfer

// The NCCL communicator under mpirun, one GPU per rank: all-reduce in f32, bf16 and f16 and
// all-gather, run eagerly and replayed from a captured CUDA graph (what the decode step does).
// Exits 77 ("SKIPPED: ...") without enough GPUs, so CTest reports it as skipped.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_factory.h"
#include "comm/communicator.h"
#include "comm/nccl/nccl_factory.h"
#include "comm/world.h"
#include "core/dtype.h"

namespace {

int g_failures = 0;

void expect(bool ok, const char* what, int rank, size_t i, double got, double want) {
  if (ok) return;
  if (++g_failures <= 10) {
    std::fprintf(stderr, "FAIL rank %d: %s at %zu: got %g, want %g\n", rank, what, i, got, want);
  }
}

uint16_t to_half(float v, tpinfer::DType d) {
  return d == tpinfer::DType::bf16 ? tpinfer::f32_to_bf16(v) : tpinfer::f32_to_f16(v);
}
float from_half(uint16_t h, tpinfer::DType d) {
  return d == tpinfer::DType::bf16 ? tpinfer::bf16_to_f32(h) : tpinfer::f16_to_f32(h);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tpinfer;
  const int n_gpus = cuda_visible_device_count();
  const char* ls = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const int local_size = ls != nullptr ? std::atoi(ls) : 1;
  if (n_gpus == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", cuda_unavailable_reason().c_str());
    return 77;
  }
  if (n_gpus < local_size) {
    std::printf("SKIPPED: %d ranks on this node need %d GPUs for NCCL, %d visible\n", local_size,
                local_size, n_gpus);
    return 77;
  }
  World world(&argc, &argv);
  world.set_tp(world.size());
  try {
    BackendOptions opts;
    opts.device_ordinal = pick_cuda_device(world.local_rank(), world.local_size(), false);
    std::unique_ptr<Backend> be = make_cuda_backend(opts);
    CudaBackend& cb = *as_cuda_backend(*be);
    std::unique_ptr<Communicator> comm = make_nccl_communicator(world, *be);
    const int R = comm->size(), r = comm->rank();
    const size_t count = 4099;
    const double tri = R * (R + 1) / 2.0;

    // f32: buf[i] = (r + 1) * (i % 7) -> sum (i % 7) * R(R+1)/2, exact in every dtype used.
    std::vector<float> hf(count);
    for (size_t i = 0; i < count; ++i) hf[i] = static_cast<float>((r + 1) * (i % 7));
    void* df = cb.alloc(count * 4);
    cb.copy_to_device(df, hf.data(), count * 4);
    comm->all_reduce_sum(df, count, DType::f32);
    cb.copy_to_host(hf.data(), df, count * 4);
    for (size_t i = 0; i < count; ++i)
      expect(hf[i] == (i % 7) * tri, "all_reduce f32", r, i, hf[i], (i % 7) * tri);

    for (DType d : {DType::bf16, DType::f16}) {
      std::vector<uint16_t> hh(count);
      for (size_t i = 0; i < count; ++i) hh[i] = to_half(static_cast<float>((r + 1) * (i % 7)), d);
      void* dh = cb.alloc(count * 2);
      cb.copy_to_device(dh, hh.data(), count * 2);
      comm->all_reduce_sum(dh, count, d);
      cb.copy_to_host(hh.data(), dh, count * 2);
      for (size_t i = 0; i < count; ++i) {
        expect(from_half(hh[i], d) == (i % 7) * tri, dtype_name(d), r, i, from_half(hh[i], d),
               (i % 7) * tri);
      }
      cb.free(dh);
    }

    // all_gather of int32: recv[q * n + i] = q * 1000 + i.
    const size_t n = 37;
    std::vector<int32_t> send(n), recv(n * R);
    for (size_t i = 0; i < n; ++i) send[i] = r * 1000 + static_cast<int32_t>(i);
    void* ds = cb.alloc(n * 4);
    void* dr = cb.alloc(n * 4 * R);
    cb.copy_to_device(ds, send.data(), n * 4);
    comm->all_gather(dr, ds, n, DType::i32);
    cb.copy_to_host(recv.data(), dr, n * 4 * R);
    for (int q = 0; q < R; ++q) {
      for (size_t i = 0; i < n; ++i) {
        const int32_t want = q * 1000 + static_cast<int32_t>(i);
        expect(recv[q * n + i] == want, "all_gather", r, q * n + i, recv[q * n + i], want);
      }
    }

    // Captured: the all-reduce is recorded once and replayed on new contents.
    if (cb.capture_begin()) {
      comm->all_reduce_sum(df, count, DType::f32);
      cb.capture_end();
      for (int round = 1; round <= 3; ++round) {
        for (size_t i = 0; i < count; ++i) hf[i] = static_cast<float>(round * (r + 1));
        cb.copy_to_device(df, hf.data(), count * 4);
        cb.replay();
        cb.copy_to_host(hf.data(), df, count * 4);
        for (size_t i = 0; i < count; ++i)
          expect(hf[i] == round * tri, "replayed all_reduce", r, i, hf[i], round * tri);
      }
    }
    cb.free(df);
    cb.free(ds);
    cb.free(dr);
    comm.reset();  // before the backend: the communicator uses its stream
    be.reset();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", world.rank(), e.what());
    world.abort(1);
  }
  const int64_t failures = world.all_reduce_sum_world(g_failures);
  if (world.rank() == 0)
    std::printf("%s: %lld failures\n", failures == 0 ? "PASS" : "FAIL",
                static_cast<long long>(failures));
  return failures == 0 ? 0 : 1;
}

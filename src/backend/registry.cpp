// make_backend: the only place in src/ that knows which backends were compiled in.
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

#if TPINFER_HAVE_CUDA
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_factory.h"
#endif

namespace tpinfer {

const char* backend_kind_name(BackendKind k) {
  switch (k) {
    case BackendKind::cpu:
      return "cpu";
    case BackendKind::cuda:
      return "cuda";
  }
  return "?";
}

bool backend_available(BackendKind kind) {
  switch (kind) {
    case BackendKind::cpu:
      return true;
    case BackendKind::cuda:
#if TPINFER_HAVE_CUDA
      return true;
#else
      return false;
#endif
  }
  return false;
}

int cuda_device_count() {
#if TPINFER_HAVE_CUDA
  return cuda_visible_device_count();
#else
  return 0;
#endif
}

int pick_device_ordinal(int local_rank, int local_size, bool allow_sharing) {
#if TPINFER_HAVE_CUDA
  return pick_cuda_device(local_rank, local_size, allow_sharing);
#else
  (void)local_rank;
  (void)local_size;
  (void)allow_sharing;
  return 0;
#endif
}

void Backend::upload_int8_weight(Tensor dst, const int8_t* q, const float* scales) {
  TPI_FAIL("backend " << backend_kind_name(kind())
                      << " cannot run int8 weights (no int8 matmul); convert with --dtype bf16 "
                         "or use backend: cpu");
}

void Backend::moe_route(Tensor, Tensor, Tensor, bool) {
  TPI_FAIL("backend " << backend_kind_name(kind())
                      << " cannot run mixture-of-experts models (no moe_route op)");
}

void Backend::moe_experts(Tensor, Tensor, const MoeExperts&, Tensor, Tensor, const MoeScratch&) {
  TPI_FAIL("backend " << backend_kind_name(kind())
                      << " cannot run mixture-of-experts models (no moe_experts op)");
}

namespace {

// int8 shards on a backend without int8 kernels: one clear error before anything is allocated.
std::unique_ptr<Backend> check_int8(std::unique_ptr<Backend> be, const BackendOptions& opts) {
  TPI_CHECK(!opts.int8_weights || be->supports_int8_weights(),
            "the model's weights are int8 (manifest dtype int8, or --dtype int8 dummy weights) "
            "but the "
                << backend_kind_name(be->kind())
                << " backend has no int8 matmul; use backend: cpu, or convert with --dtype bf16");
  return be;
}

}  // namespace

std::unique_ptr<Backend> make_backend(BackendKind kind, const BackendOptions& opts) {
  switch (kind) {
    case BackendKind::cpu:
      return check_int8(make_cpu_backend(opts), opts);
    case BackendKind::cuda:
#if TPINFER_HAVE_CUDA
      return check_int8(make_cuda_backend(opts), opts);
#else
      TPI_FAIL(
          "backend 'cuda' was requested but this tpinfer was built without CUDA "
          "(no nvcc at configure time, or -DTPINFER_CUDA=OFF); use backend: cpu");
#endif
  }
  TPI_FAIL("unknown backend");
}

}  // namespace tpinfer

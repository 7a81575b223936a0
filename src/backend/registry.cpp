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

std::unique_ptr<Backend> make_backend(BackendKind kind, const BackendOptions& opts) {
  switch (kind) {
    case BackendKind::cpu:
      return make_cpu_backend(opts);
    case BackendKind::cuda:
#if TPINFER_HAVE_CUDA
      return make_cuda_backend(opts);
#else
      TPI_FAIL(
          "backend 'cuda' was requested but this tpinfer was built without CUDA "
          "(no nvcc at configure time, or -DTPINFER_CUDA=OFF); use backend: cpu");
#endif
  }
  TPI_FAIL("unknown backend");
}

}  // namespace tpinfer

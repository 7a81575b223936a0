// Device discovery and the local-rank -> GPU binding rule (see cuda_device.h).
#include "backend/cuda/cuda_device.h"

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_factory.h"
#include "core/error.h"

namespace tpinfer {
namespace {

// Device count and, when it is zero, the runtime's reason. A machine without a driver reports
// "CUDA driver version is insufficient": that is "no GPU", not an error.
int query_device_count(std::string* reason) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it so later calls do not trip over it
    if (reason != nullptr)
      reason->assign(std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e));
    return 0;
  }
  if (n == 0 && reason != nullptr) reason->assign("cudaGetDeviceCount returned 0 devices");
  return n;
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

int cuda_visible_device_count() {
  return query_device_count(nullptr);
}

std::string cuda_unavailable_reason() {
  std::string reason;
  return query_device_count(&reason) > 0 ? std::string() : reason;
}

DeviceBindingEnv read_device_binding_env() {
  DeviceBindingEnv env;
  env.n_visible = query_device_count(&env.unavailable_reason);
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  env.visible_devices = visible != nullptr ? visible : "<unset>";
  const char* bind = std::getenv("SLURM_GPU_BIND");
  const bool bind_none = bind != nullptr && std::strncmp(bind, "none", 4) == 0;
  env.slurm_binds_gpus =
      !bind_none && (env_set("SLURM_GPU_BIND") || env_set("SLURM_GPUS_PER_TASK"));
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) env.hostname = host;
  return env;
}

int choose_cuda_device(int local_rank, int local_size, bool allow_sharing,
                       const DeviceBindingEnv& env) {
  TPI_CHECK(local_rank >= 0 && local_size > 0 && local_rank < local_size,
            "pick_cuda_device: local rank " << local_rank << " of " << local_size
                                            << " is not a valid node-local rank");
  if (env.n_visible <= 0) {
    TPI_FAIL("no CUDA device visible to local rank "
             << local_rank << " on node " << env.hostname
             << " (CUDA_VISIBLE_DEVICES=" << env.visible_devices << "; "
             << (env.unavailable_reason.empty() ? "no device" : env.unavailable_reason)
             << "); use backend: cpu on machines without a GPU");
  }
  if (env.slurm_binds_gpus) return local_rank % env.n_visible;
  if (env.n_visible >= local_size) return local_rank;
  if (allow_sharing) return local_rank % env.n_visible;
  TPI_FAIL(local_size << " ranks on node " << env.hostname << " but only " << env.n_visible
                      << " visible GPU" << (env.n_visible == 1 ? "" : "s")
                      << " (CUDA_VISIBLE_DEVICES=" << env.visible_devices << "); run at most "
                      << env.n_visible
                      << " ranks per node, or set allow_gpu_sharing: true to share "
                      << (env.n_visible == 1 ? "one GPU" : "the GPUs")
                      << " for tests (then use comm: mpi, NCCL needs one GPU per rank)");
}

int pick_cuda_device(int local_rank, int local_size, bool allow_sharing) {
  return choose_cuda_device(local_rank, local_size, allow_sharing, read_device_binding_env());
}

}  // namespace tpinfer

// Entry of test_cuda_ops: without a usable CUDA device it prints why and exits 77, which CTest
// reports as "Skipped" (SKIP_RETURN_CODE 77), so a CPU-only machine never shows these as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

#include "backend/backend.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_factory.h"
#include "cuda_test_util.h"

namespace tpinfer::test {
namespace {
// Released at the end of main, while the CUDA runtime is still up.
std::unique_ptr<Backend> g_cpu;
std::unique_ptr<Backend> g_cuda;
}  // namespace

Backend& cpu_backend() {
  if (!g_cpu) g_cpu = make_backend(BackendKind::cpu, BackendOptions{});
  return *g_cpu;
}

CudaBackend& cuda_backend() {
  if (!g_cuda) {
    BackendOptions opts;
    const char* dev = std::getenv("TPINFER_TEST_CUDA_DEVICE");
    opts.device_ordinal = dev != nullptr ? std::atoi(dev) : 0;
    g_cuda = make_cuda_backend(opts);
  }
  return *as_cuda_backend(*g_cuda);
}

void release_backends() {
  g_cuda.reset();
  g_cpu.reset();
}

}  // namespace tpinfer::test

int main(int argc, char** argv) {
  if (tpinfer::cuda_visible_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n", tpinfer::cuda_unavailable_reason().c_str());
    std::fflush(stdout);
    return 77;
  }
  std::printf("test_cuda_ops on %s\n", tpinfer::test::cuda_backend().describe().c_str());
  const int rc = Catch::Session().run(argc, argv);
  tpinfer::test::release_backends();
  return rc;
}

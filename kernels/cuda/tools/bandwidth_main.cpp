// tpinfer-cuda-bandwidth: measures what bounds a weight-streaming decode step on one GPU, the
// device-to-device copy bandwidth (read + write bytes / time) and the read-only bandwidth of a
// 128-bit streaming kernel. Prints a readable summary and one JSON line (for bench_gpu.sh).
//   tpinfer-cuda-bandwidth [--device N] [--mib SIZE] [--iters N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/kernels.h"

namespace {

#define BW_CHECK(stmt)                                                                     \
  do {                                                                                     \
    const cudaError_t e_ = (stmt);                                                         \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "tpinfer-cuda-bandwidth: %s failed: %s (%s) at %s:%d\n", #stmt, \
                   cudaGetErrorString(e_), cudaGetErrorName(e_), __FILE__, __LINE__);      \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

// Median over `iters` timed runs of `fn` (after one warm-up), in milliseconds.
template <typename Fn>
float time_ms(cudaStream_t stream, int iters, Fn fn) {
  cudaEvent_t a, b;
  BW_CHECK(cudaEventCreate(&a));
  BW_CHECK(cudaEventCreate(&b));
  fn();
  BW_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    BW_CHECK(cudaEventRecord(a, stream));
    fn();
    BW_CHECK(cudaEventRecord(b, stream));
    BW_CHECK(cudaEventSynchronize(b));
    float t = 0;
    BW_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  BW_CHECK(cudaEventDestroy(a));
  BW_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0;
  size_t mib = 1024;
  int iters = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) {
      device = std::atoi(argv[++i]);
    } else if (a == "--mib" && i + 1 < argc) {
      mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--iters" && i + 1 < argc) {
      iters = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--device N] [--mib SIZE] [--iters N]\n", argv[0]);
      return 2;
    }
  }
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    std::fprintf(stderr, "tpinfer-cuda-bandwidth: no CUDA device (%s)\n",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0");
    return 77;
  }
  BW_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop;
  BW_CHECK(cudaGetDeviceProperties(&prop, device));
  const size_t bytes = mib << 20;
  void *src = nullptr, *dst = nullptr;
  float* sink = nullptr;
  BW_CHECK(cudaMalloc(&src, bytes));
  BW_CHECK(cudaMalloc(&dst, bytes));
  BW_CHECK(cudaMalloc(&sink, sizeof(float) * tpinfer::gpu::read_probe_blocks()));
  BW_CHECK(cudaMemset(src, 1, bytes));
  cudaStream_t stream;
  BW_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  const float copy_ms = time_ms(stream, iters, [&] {
    BW_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  const float read_ms = time_ms(stream, iters, [&] {
    tpinfer::gpu::read_probe(sink, src, bytes / 16, stream);
    BW_CHECK(cudaGetLastError());
  });
  const double copy_gbps = 2.0 * bytes / (copy_ms * 1e-3) / 1e9;
  const double read_gbps = static_cast<double>(bytes) / (read_ms * 1e-3) / 1e9;
  std::printf("device %d: %s, buffer %zu MiB, %d iterations (median)\n", device, prop.name, mib,
              iters);
  std::printf("  D2D copy : %8.3f ms  %8.1f GB/s (read + write)\n", copy_ms, copy_gbps);
  std::printf("  read-only: %8.3f ms  %8.1f GB/s\n", read_ms, read_gbps);
  std::printf(
      "{\"device\": \"%s\", \"buffer_bytes\": %zu, \"d2d_copy_GBps\": %.1f, "
      "\"read_GBps\": %.1f}\n",
      prop.name, bytes, copy_gbps, read_gbps);
  BW_CHECK(cudaStreamDestroy(stream));
  BW_CHECK(cudaFree(src));
  BW_CHECK(cudaFree(dst));
  BW_CHECK(cudaFree(sink));
  return 0;
}

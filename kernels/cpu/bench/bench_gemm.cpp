// tpinfer-bench-gemm: the CPU matmul paths (kernels/cpu/gemm.h) on the shapes a model runs, and
// the machine's read bandwidth, so decode can be judged against its memory bound (benchmark, not
// a test). Threads follow OMP_NUM_THREADS; pin them with OMP_PROC_BIND=close OMP_PLACES=cores.
//
//   tpinfer-bench-gemm --bw [--streams S]        read bandwidth, GB/s (fastest 64 MiB window of
//                                                --repeats passes over 1 GiB; S sequential
//                                                streams per thread, default best of 1, 2, 8)
//   tpinfer-bench-gemm [--isa NAME] [--T 1,8,32] [--shapes NxK,...] [--f32] [--repeats R]
//                      [--no-huge-pages] [--panel-max T]   (T: tokens up to which the panel runs)
//
// Each row prints tokens T, the weight shape N x K, the fastest and the median time per call,
// and at the fastest: the weight bytes read per second (the decode figure: each weight is read
// once per call) and GFLOP/s (the prefill figure). Defaults: the 1.1B Llama's matrices (q/o
// 2048x2048, gate/up 5632x2048, down 2048x5632, lm_head 32000x2048) at T = 1, 2, 4, 8, 16, 32, 64,
// 512.
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/gemm.h"

namespace {

using Clock = std::chrono::steady_clock;

// Weight bytes cycled through per shape: well past the last-level cache.
constexpr double kColdBytes = 512.0 * 1024 * 1024;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    v.push_back(std::atoi(s.substr(i, j - i).c_str()));
    i = j + 1;
  }
  return v;
}

// Weights as the backend holds them: 2 MiB aligned, transparent huge pages asked for (unless
// --no-huge-pages), touched before use.
template <class V>
struct HostBuffer {
  V* p = nullptr;
  HostBuffer(size_t n, bool huge) {
    if (n == 0) return;
    const size_t bytes = (n * sizeof(V) + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    p = static_cast<V*>(std::aligned_alloc(2u << 20, bytes));
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
  }
  ~HostBuffer() { std::free(p); }
  V& operator[](size_t i) { return p[i]; }
  V* data() { return p; }
};

// Read bandwidth: a buffer far larger than the caches, read in windows of 64 MiB (each twice the
// size of a large L3, and the windows in turn, so each read comes from memory), every window
// timed alone and the fastest counts: on a shared machine a window a few ms long that no other
// job interrupted shows what the memory delivers (a whole 1 GiB pass rarely is). Each thread
// reads its part of the window as `streams` interleaved sequential streams (one stream per
// thread leaves the memory system idle between requests; a GEMV reads several rows at once),
// 512-bit loads, one sum per stream.
double read_bandwidth(size_t bytes, int repeats, bool huge_pages, int streams) {
  constexpr size_t kWindow = size_t{64} << 20;
  const size_t n = bytes / sizeof(float), wn = kWindow / sizeof(float);
  HostBuffer<float> buf(n, huge_pages);
  float* a = buf.data();
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = 1.0f;
  double best = 0;
  float sink = 0;
  const int nt = omp_get_max_threads();
  const size_t per = wn / nt / streams / 16 * 16;  // floats per stream and window
  for (int r = 0; r < repeats; ++r) {
    for (size_t w0 = 0; w0 + wn <= n; w0 += wn) {
      const auto t0 = Clock::now();
      float total = 0;
#pragma omp parallel reduction(+ : total) num_threads(nt)
      {
        const float* base = a + w0 + per * streams * omp_get_thread_num();
        float s[16][16] = {};
        for (size_t i = 0; i < per; i += 16) {
          for (int j = 0; j < streams; ++j) {
#pragma omp simd
            for (int l = 0; l < 16; ++l) s[j][l] += base[j * per + i + l];
          }
        }
        for (int j = 0; j < streams; ++j)
          for (int l = 0; l < 16; ++l) total += s[j][l];
      }
      const double dt = seconds_since(t0);
      sink += total;
      best = std::max(best, static_cast<double>(per * streams * nt * sizeof(float)) / dt / 1e9);
    }
  }
  if (sink == -1.0f) std::printf("\n");  // keeps the sums alive
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  using tpinfer::cpu::Isa;
  Isa isa = tpinfer::cpu::best_isa();
  std::vector<int> Ts = {1, 2, 4, 8, 16, 32, 64, 512};
  std::vector<std::pair<int, int>> shapes = {
      {2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
  bool f32_weights = false, bw_only = false, huge_pages = true;
  int repeats = 0, streams = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tpinfer-bench-gemm: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--bw") {
      bw_only = true;
    } else if (a == "--isa") {
      const std::string s = value();
      if (!tpinfer::cpu::parse_isa(s.c_str(), &isa) || !tpinfer::cpu::isa_supported(isa)) {
        std::fprintf(stderr, "tpinfer-bench-gemm: --isa %s: unknown or not supported here\n",
                     s.c_str());
        return 2;
      }
    } else if (a == "--T") {
      Ts = parse_ints(value());
    } else if (a == "--shapes") {
      shapes.clear();
      const std::string s = value();
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        const std::string one = s.substr(p, q - p);
        const size_t x = one.find('x');
        if (x == std::string::npos) {
          std::fprintf(stderr, "tpinfer-bench-gemm: --shapes: expected NxK, found '%s'\n",
                       one.c_str());
          return 2;
        }
        shapes.emplace_back(std::atoi(one.substr(0, x).c_str()),
                            std::atoi(one.substr(x + 1).c_str()));
        p = q + 1;
      }
    } else if (a == "--streams") {
      streams = std::clamp(std::atoi(value().c_str()), 1, 16);
    } else if (a == "--panel-max") {
      tpinfer::cpu::set_panel_max_tokens(std::atoi(value().c_str()));
    } else if (a == "--no-huge-pages") {
      huge_pages = false;
    } else if (a == "--f32") {
      f32_weights = true;
    } else if (a == "--repeats") {
      repeats = std::atoi(value().c_str());
    } else {
      std::fprintf(stderr,
                   "usage: tpinfer-bench-gemm [--bw [--streams S]] [--isa NAME] [--T 1,8] "
                   "[--shapes NxK,...] "
                   "[--f32] [--no-huge-pages] [--panel-max T] [--repeats R]\n");
      return 2;
    }
  }
  if (bw_only) {
    // Without --streams: the best of 1, 2 and 8 streams per thread (which is best depends on
    // the machine: 1-2 on the development VM, several where one stream cannot fill the memory).
    double best = 0;
    for (int s : streams > 0 ? std::vector<int>{streams} : std::vector<int>{1, 2, 8})
      best = std::max(best,
                      read_bandwidth(size_t{1} << 30, repeats > 0 ? repeats : 10, huge_pages, s));
    std::printf("%.1f\n", best);
    return 0;
  }
  std::printf("# %d threads, matmul %s, %s weights\n", omp_get_max_threads(),
              tpinfer::cpu::isa_name(isa), f32_weights ? "f32" : "bf16");
  std::printf("%6s %12s %10s %10s %9s %9s\n", "T", "N x K", "ms best", "ms median", "GB/s",
              "GFLOP/s");
  for (auto [N, K] : shapes) {
    const size_t wn = size_t(N) * K;
    const double wbytes = double(wn) * (f32_weights ? 4 : 2);
    // Enough copies of the matrix that they do not fit in the caches together (as a model's
    // layers): the calls cycle through them, so each reads its weights from memory.
    const int copies = std::max(1, static_cast<int>(std::ceil(kColdBytes / wbytes)));
    HostBuffer<uint16_t> wb(f32_weights ? 0 : wn * copies, huge_pages);
    HostBuffer<float> wf(f32_weights ? wn * copies : 0, huge_pages);
    uint32_t seed = 12345;
    for (size_t i = 0; i < wn * copies; ++i) {
      seed = seed * 1664525u + 1013904223u;
      const float f = (static_cast<int>(seed >> 9) - (1 << 22)) * (0.02f / (1 << 22));
      uint32_t u;
      std::memcpy(&u, &f, 4);
      if (f32_weights) {
        wf[i] = f;
      } else {
        wb[i] = static_cast<uint16_t>(u >> 16);
      }
    }
    for (int T : Ts) {
      std::vector<float> x(size_t(T) * K, 0.5f), out(size_t(T) * N);
      // Enough calls for about 0.3 s per repeat, at least one pass over the copies.
      const int calls = std::max(copies, static_cast<int>(3e8 / (double(T) * N * K + wbytes * 20)));
      // Each call timed alone; the fastest call is reported (robust on a shared machine, where
      // a call that was not preempted is the one that shows what the kernel does), and the median.
      const int reps = repeats > 0 ? repeats : 5;
      std::vector<double> times;
      for (int r = 0; r < reps; ++r) {
        for (int c = 0; c < calls; ++c) {
          const auto t0 = Clock::now();
          if (f32_weights) {
            tpinfer::cpu::gemm_f32(isa, out.data(), x.data(), wf.data() + (c % copies) * wn, T, N,
                                   K);
          } else {
            tpinfer::cpu::gemm_bf16(isa, out.data(), x.data(), wb.data() + (c % copies) * wn, T, N,
                                    K);
          }
          times.push_back(seconds_since(t0));
        }
      }
      std::sort(times.begin(), times.end());
      const double best = times.front(), median = times[times.size() / 2];
      char nk[32];
      std::snprintf(nk, sizeof nk, "%dx%d", N, K);
      std::printf("%6d %12s %10.3f %10.3f %9.1f %9.1f\n", T, nk, best * 1e3, median * 1e3,
                  wbytes / best / 1e9, 2.0 * T * N * K / best / 1e9);
      std::fflush(stdout);
    }
  }
  return 0;
}

// tpinfer-bench-gemm-libs: the project's bf16 matmul (kernels/cpu/gemm.h, best path) next to
// oneDNN's bf16 matmul and OpenBLAS on the same shapes (benchmark, not a test; built only when
// CMake finds both libraries: see kernels/cpu/CMakeLists.txt). Each engine gets f32 activations
// and weights stored [N, K] and writes f32 out[T, N]. tpinfer and oneDNN read bf16 weights;
// oneDNN takes bf16 activations (rounded inside the timed call) and its weights are reordered
// once, before timing, to the layout it prefers (what a backend would do at load). Debian 12's
// OpenBLAS 0.3.21 is built without BUILD_BFLOAT16 (no cblas_sbgemm), so its column is
// cblas_sgemm on f32 weights: twice the bytes. Threads: OMP_NUM_THREADS (all run on OpenMP;
// use the openmp flavour of OpenBLAS).
//
//   tpinfer-bench-gemm-libs [--T 1,8,32,64,512] [--shapes NxK,...] [--repeats R]
//
// Prints per shape and T the fastest call of each engine (ms) and its GFLOP/s; weights cycle
// through copies past the last-level cache, as a model's layers do.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "cpu/gemm.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kColdBytes = 256.0 * 1024 * 1024;

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> v;
  for (size_t i = 0; i < s.size();) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    v.push_back(std::atoi(s.substr(i, j - i).c_str()));
    i = j + 1;
  }
  return v;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Fastest of `calls` x `repeats` timed calls of f(c) (c = call index), in seconds.
double fastest(int calls, int repeats, const std::function<void(int)>& f) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r)
    for (int c = 0; c < calls; ++c) {
      const auto t0 = Clock::now();
      f(c);
      best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> Ts = {1, 8, 32, 64, 512};
  std::vector<std::pair<int, int>> shapes = {
      {2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
  int repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--T") {
      Ts = parse_ints(v);
    } else if (a == "--repeats") {
      repeats = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--shapes") {
      shapes.clear();
      for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        const std::string one = v.substr(p, q - p);
        const size_t x = one.find('x');
        shapes.emplace_back(std::atoi(one.substr(0, x).c_str()),
                            std::atoi(one.substr(x + 1).c_str()));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: tpinfer-bench-gemm-libs [--T 1,8] [--shapes NxK,...] [--repeats R]\n");
      return 2;
    }
  }
  const auto isa = tpinfer::cpu::best_isa();
  std::printf("# %d threads; tpinfer matmul %s; OpenBLAS %s; oneDNN %d.%d.%d\n",
              omp_get_max_threads(), tpinfer::cpu::isa_name(isa), openblas_get_config(),
              dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
  std::printf("%5s %12s | %9s %7s | %9s %7s | %9s %7s\n", "T", "N x K", "tpinfer", "GF/s",
              "oblas f32", "GF/s", "onednn", "GF/s");
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  for (auto [N, K] : shapes) {
    const size_t wn = size_t(N) * K;
    const int copies = std::max(1, static_cast<int>(std::ceil(kColdBytes / (wn * 2.0))));
    std::vector<uint16_t> w(wn * copies);
    std::vector<float> wf(wn * copies);
    uint32_t seed = 7;
    for (size_t i = 0; i < w.size(); ++i) {
      seed = seed * 1664525u + 1013904223u;
      w[i] = to_bf16((static_cast<int>(seed >> 9) - (1 << 22)) * (0.02f / (1 << 22)));
      const uint32_t u = uint32_t{w[i]} << 16;
      std::memcpy(&wf[i], &u, 4);
    }
    for (int T : Ts) {
      std::vector<float> x(size_t(T) * K, 0.5f), out(size_t(T) * N);
      std::vector<uint16_t> xb(size_t(T) * K);
      const int calls = std::max(copies, static_cast<int>(2e8 / (double(T) * N * K + wn * 40.0)));
      const double flop = 2.0 * T * N * K;

      const double t_own = fastest(calls, repeats, [&](int c) {
        tpinfer::cpu::gemm_bf16(isa, out.data(), x.data(), w.data() + (c % copies) * wn, T, N, K);
      });

      const double t_blas = fastest(calls, repeats, [&](int c) {
        // out[T, N] = x[T, K] . wf[N, K]^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x.data(), K,
                    wf.data() + (c % copies) * wn, K, 0.0f, out.data(), N);
      });

      // oneDNN: src bf16 [T, K], weights bf16 [K, N] (given as [N, K] row-major = tag ba),
      // reordered once per copy to the primitive's preferred layout; dst f32 [T, N].
      dnnl::memory::desc src_md({T, K}, dt::bf16, tag::ab);
      dnnl::memory::desc w_any({K, N}, dt::bf16, tag::any);
      dnnl::memory::desc dst_md({T, N}, dt::f32, tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_any, dst_md), eng);  // 2.x API
      dnnl::matmul mm(pd);
      std::vector<dnnl::memory> wmem;
      for (int c = 0; c < copies; ++c) {
        dnnl::memory user({{K, N}, dt::bf16, tag::ba}, eng, w.data() + c * wn);
        dnnl::memory packed(pd.weights_desc(), eng);
        dnnl::reorder(user, packed).execute(strm, user, packed);
        wmem.push_back(packed);
      }
      dnnl::memory src(src_md, eng, xb.data()), dst(dst_md, eng, out.data());
      const double t_dnnl = fastest(calls, repeats, [&](int c) {
        for (size_t i = 0; i < xb.size(); ++i) xb[i] = to_bf16(x[i]);
        mm.execute(
            strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem[c % copies]}, {DNNL_ARG_DST, dst}});
        strm.wait();
      });

      char nk[32];
      std::snprintf(nk, sizeof nk, "%dx%d", N, K);
      std::printf("%5d %12s | %9.3f %7.1f | %9.3f %7.1f | %9.3f %7.1f\n", T, nk, t_own * 1e3,
                  flop / t_own / 1e9, t_blas * 1e3, flop / t_blas / 1e9, t_dnnl * 1e3,
                  flop / t_dnnl / 1e9);
      std::fflush(stdout);
    }
  }
  return 0;
}

// The CPU matmul paths of kernels/cpu/gemm.h (portable, AVX2, AVX-512, AVX-512 BF16; each one
// this CPU can run) against a double-precision reference on shapes with tails in T, N and K;
// batch invariance (a row of a batch is bitwise the row alone) at 1 and 2 threads; the run-time
// choice (TPINFER_CPU_ISA, deterministic) through the backend.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "../lib/random_data.h"
#include "backend/backend.h"
#include "cpu/cpu_kernels.h"
#include "cpu/gemm.h"

using namespace tpinfer;
using cpu::Isa;

namespace {

const Isa kAll[] = {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512bf16};

// Shapes: K below, at and past the vector widths (8, 16, 32 lanes), T and N past the tiles.
// T = 1..8 run the decode panel (all tokens in registers), above the blocked GEMM; the last
// three are big enough to split their rows over the threads.
const std::tuple<int, int, int> kShapes[] = {
    {1, 1, 1},    {1, 7, 13},   {2, 9, 8},   {3, 5, 16},    {4, 8, 32},   {5, 17, 33},
    {1, 19, 64},  {9, 33, 172}, {13, 6, 47}, {1, 40, 1000}, {6, 11, 257}, {7, 23, 96},
    {8, 29, 130}, {2, 70, 300}, {4, 61, 64}, {3, 45, 700},  {8, 37, 260}, {1, 100, 700}};

float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t to_bf16(float f) {  // round to nearest even (finite inputs)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// ref[t, n] = sum_k x[t, k] w[n, k] in double; also sum_k |x w| for the tolerance.
void reference(const std::vector<float>& x, const std::vector<float>& w, int T, int N, int K,
               std::vector<double>* ref, std::vector<double>* mag) {
  ref->assign(T * N, 0.0);
  mag->assign(T * N, 0.0);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double s = 0, m = 0;
      for (int k = 0; k < K; ++k) {
        const double p = double(x[t * K + k]) * w[n * K + k];
        s += p;
        m += std::abs(p);
      }
      (*ref)[t * N + n] = s;
      (*mag)[t * N + n] = m;
    }
}

void run(Isa isa, bool bf16_weights, float* out, const float* x, const std::vector<float>& wf,
         const std::vector<uint16_t>& wb, int T, int N, int K) {
  if (bf16_weights) {
    cpu::gemm_bf16(isa, out, x, wb.data(), T, N, K);
  } else {
    cpu::gemm_f32(isa, out, x, wf.data(), T, N, K);
  }
}

}  // namespace

TEST_CASE("cpu gemm: every supported path matches the reference, tails included", "[ops][gemm]") {
  REQUIRE(cpu::isa_supported(Isa::portable));
  REQUIRE(cpu::isa_supported(cpu::best_isa()));
  for (Isa isa : kAll) {
    if (!cpu::isa_supported(isa)) {
      WARN("this CPU cannot run " << cpu::isa_name(isa) << ": not tested here");
      continue;
    }
    for (bool bf16_weights : {false, true}) {
      for (auto [T, N, K] : kShapes) {
        INFO(cpu::isa_name(isa) << (bf16_weights ? " bf16" : " f32") << " weights, T=" << T
                                << " N=" << N << " K=" << K);
        auto x = randn(size_t(T) * K, 1 + T * 7 + K);
        auto wf = randn(size_t(N) * K, 2 + N * 5 + K);
        std::vector<uint16_t> wb(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) {
          wb[i] = to_bf16(wf[i]);
          if (bf16_weights) wf[i] = from_bf16(wb[i]);  // the reference sees the stored weights
        }
        // The bf16 dot-product path rounds activations to bf16: its reference does the same.
        const bool bf16_acts = bf16_weights && isa == Isa::avx512bf16;
        auto xr = x;
        if (bf16_acts)
          for (float& v : xr) v = from_bf16(to_bf16(v));
        std::vector<double> ref, mag;
        reference(xr, wf, T, N, K, &ref, &mag);
        std::vector<float> out(size_t(T) * N, NAN);
        run(isa, bf16_weights, out.data(), x.data(), wf, wb, T, N, K);
        for (size_t i = 0; i < out.size(); ++i) {
          INFO("element " << i << ": got " << out[i] << ", reference " << ref[i]);
          REQUIRE(std::abs(out[i] - ref[i]) <= 2e-5 * mag[i] + 1e-30);
        }
        if (bf16_acts) {  // and stays close to f32 activations: a bf16 rounding per product
          reference(x, wf, T, N, K, &ref, &mag);
          for (size_t i = 0; i < out.size(); ++i)
            REQUIRE(std::abs(out[i] - ref[i]) <= 8e-3 * mag[i] + 1e-30);
        }
      }
    }
  }
}

TEST_CASE("cpu gemm: every path is batch invariant and thread-count invariant", "[ops][gemm]") {
  const int T = 11, N = 77, K = 203;
  auto x = randn(size_t(T) * K, 11);
  auto wf = randn(size_t(N) * K, 12);
  std::vector<uint16_t> wb(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wb[i] = to_bf16(wf[i]);
  const int threads = omp_get_max_threads();
  for (Isa isa : kAll) {
    if (!cpu::isa_supported(isa)) continue;
    for (bool bf16_weights : {false, true}) {
      INFO(cpu::isa_name(isa) << (bf16_weights ? " bf16" : " f32") << " weights");
      std::vector<float> batch(size_t(T) * N);
      run(isa, bf16_weights, batch.data(), x.data(), wf, wb, T, N, K);
      for (int t = 0; t < T; ++t) {
        std::vector<float> one(N);
        run(isa, bf16_weights, one.data(), x.data() + size_t(t) * K, wf, wb, 1, N, K);
        REQUIRE(std::memcmp(one.data(), batch.data() + size_t(t) * N, sizeof(float) * N) == 0);
      }
      for (int tail = 2; tail <= 9; ++tail) {  // every panel height and the first blocked one
        std::vector<float> part(size_t(tail) * N);
        run(isa, bf16_weights, part.data(), x.data() + K, wf, wb, tail, N, K);
        REQUIRE(std::memcmp(part.data(), batch.data() + N, sizeof(float) * tail * N) == 0);
      }
      for (int nt : {1, 2}) {
        omp_set_num_threads(nt);
        std::vector<float> again(size_t(T) * N);
        run(isa, bf16_weights, again.data(), x.data(), wf, wb, T, N, K);
        REQUIRE(std::memcmp(again.data(), batch.data(), sizeof(float) * T * N) == 0);
      }
      omp_set_num_threads(threads);
    }
  }
}

TEST_CASE("cpu gemm: the portable path is the old kernel, the choice is validated", "[ops][gemm]") {
  Isa isa{};
  CHECK(cpu::parse_isa("avx512bf16", &isa));
  CHECK(isa == Isa::avx512bf16);
  CHECK_FALSE(cpu::parse_isa("avx9", &isa));

  const int T = 5, N = 9, K = 70;
  auto x = randn(size_t(T) * K, 21), w = randn(size_t(N) * K, 22);
  std::vector<float> old(size_t(T) * N), got(size_t(T) * N);
  cpu::matmul_f32(old.data(), x.data(), w.data(), T, N, K);

  SECTION("deterministic: true runs the portable kernel") {
    BackendOptions o;
    o.deterministic = true;
    auto be = make_backend(BackendKind::cpu, o);
    CHECK_THAT(be->describe(), Catch::Contains("matmul portable (deterministic)"));
    be->matmul(Tensor{got.data(), DType::f32, T, N}, Tensor{x.data(), DType::f32, T, K},
               Tensor{w.data(), DType::f32, N, K});
    REQUIRE(std::memcmp(got.data(), old.data(), sizeof(float) * T * N) == 0);
  }
  SECTION("the default is the best path, named in describe()") {
    auto be = make_backend(BackendKind::cpu, {});
    CHECK_THAT(be->describe(),
               Catch::Contains(std::string("matmul ") + cpu::isa_name(cpu::best_isa())));
  }
  SECTION("TPINFER_CPU_ISA forces a path; a bad value is a one-line error") {
    setenv("TPINFER_CPU_ISA", "portable", 1);
    auto be = make_backend(BackendKind::cpu, {});
    CHECK_THAT(be->describe(), Catch::Contains("matmul portable"));
    setenv("TPINFER_CPU_ISA", "avx9", 1);
    REQUIRE_THROWS_WITH(make_backend(BackendKind::cpu, {}),
                        Catch::Contains("TPINFER_CPU_ISA: expected auto, portable, avx2, avx512 "
                                        "or avx512bf16, found 'avx9'"));
    unsetenv("TPINFER_CPU_ISA");
  }
}

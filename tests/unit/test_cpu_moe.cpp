// The CPU backend's mixture-of-experts ops: routing (softmax, top-k, renormalise) against a
// double-precision reference and, on equal scores, against the experts torch.topk picks on the
// CPU (its ids below were printed by torch 2.15: torch.topk(torch.softmax(x, -1), k).indices);
// the experts against a plain reference, batch == single, and only the active experts read; with
// several threads and many active experts (threads take whole experts), the same bits as one
// thread.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../lib/random_data.h"
#include "backend/backend.h"

using namespace tpinfer;

namespace {

struct Route {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Route route(Backend& be, std::vector<float> logits, int T, int E, int k, bool normalize) {
  Route r{std::vector<int32_t>(static_cast<size_t>(T) * k), std::vector<float>(T * k)};
  be.moe_route(Tensor{r.ids.data(), DType::i32, T, k}, Tensor{r.weights.data(), DType::f32, T, k},
               Tensor{logits.data(), DType::f32, T, E}, normalize);
  return r;
}

std::unique_ptr<Backend> cpu() {
  return make_backend(BackendKind::cpu, BackendOptions{0, 1});
}

}  // namespace

TEST_CASE("moe_route: equal scores pick the experts torch.topk picks on the CPU", "[ops][moe]") {
  auto be = cpu();
  struct Case {
    int E, k;
    std::vector<int32_t> torch_ids;
  };
  // All scores equal (zero logits): nth_element + sort (64 k > E) or partial_sort (64 k <= E).
  for (const Case& c :
       {Case{8, 2, {6, 5}}, Case{8, 3, {6, 5, 4}}, Case{128, 8, {84, 87, 86, 85, 82, 81, 88, 83}},
        Case{128, 2, {0, 1}}, Case{6, 4, {3, 5, 4, 0}}}) {
    CAPTURE(c.E, c.k);
    const Route r = route(*be, std::vector<float>(c.E, 0.0f), 1, c.E, c.k, true);
    CHECK(r.ids == c.torch_ids);
    for (float w : r.weights) CHECK(w == Approx(1.0 / c.k).epsilon(1e-6));
  }
  // Four experts tie for the top score, top-3 takes three of them as torch does.
  const Route r = route(*be, {0.3f, 1.0f, 1.0f, -0.5f, 1.0f, 0.2f, 1.0f, 0.9f}, 1, 8, 3, false);
  CHECK(r.ids == std::vector<int32_t>{1, 6, 4});
}

TEST_CASE("moe_route matches softmax + top-k + renormalisation in double", "[ops][moe]") {
  auto be = cpu();
  const int T = 7, E = 16, k = 4;
  const std::vector<float> logits = randn(T * E, 11, 2.0f);
  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    const Route r = route(*be, logits, T, E, k, normalize);
    for (int t = 0; t < T; ++t) {
      std::vector<double> p(E);
      double mx = -1e300, sum = 0;
      for (int e = 0; e < E; ++e) mx = std::max(mx, double(logits[t * E + e]));
      for (int e = 0; e < E; ++e) sum += p[e] = std::exp(logits[t * E + e] - mx);
      for (double& v : p) v /= sum;
      std::vector<int> order(E);
      for (int e = 0; e < E; ++e) order[e] = e;
      std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
      double top = 0;
      for (int j = 0; j < k; ++j) top += p[order[j]];
      for (int j = 0; j < k; ++j) {
        CHECK(r.ids[t * k + j] == order[j]);  // random scores: sorted, largest first
        const double want = normalize ? p[order[j]] / top : p[order[j]];
        CHECK(std::abs(r.weights[t * k + j] - want) <= 1e-6 + 1e-5 * want);
      }
    }
  }
}

// T tokens routed to k of the first E - 1 experts; expert E - 1 is never routed to, and its NaN
// weights would poison the output if it were read. Seeds seed..seed + 4.
struct MoeCase {
  int E, k, H, I, T;
  std::vector<float> gate, up, down, x, w;
  std::vector<int32_t> ids;
  std::vector<float> sx, sg, su, sy;
  std::vector<int32_t> order, offsets;

  MoeCase(int E_, int k_, int H_, int I_, int T_, uint64_t seed)
      : E(E_),
        k(k_),
        H(H_),
        I(I_),
        T(T_),
        gate(randn(E * I * H, seed, 0.3f)),
        up(randn(E * I * H, seed + 1, 0.3f)),
        down(randn(E * H * I, seed + 2, 0.3f)),
        x(randn(T * H, seed + 3)),
        w(T * k),
        ids(T * k),
        sx(T * k * H),
        sg(T * k * I),
        su(T * k * I),
        sy(T * k * H),
        order(T * k),
        offsets(E + 1) {
    std::fill(gate.begin() + (E - 1) * I * H, gate.end(), std::numeric_limits<float>::quiet_NaN());
    std::mt19937 rng(static_cast<unsigned>(seed + 4));
    for (int t = 0; t < T; ++t) {
      ids[t * k] = static_cast<int32_t>(rng() % (E - 1));
      ids[t * k + 1] = static_cast<int32_t>((ids[t * k] + 1 + rng() % (E - 2)) % (E - 1));
      w[t * k] = 0.25f + 0.5f * static_cast<float>(rng() % 100) / 100.0f;
      w[t * k + 1] = 1.0f - w[t * k];
    }
  }
  // moe_experts on tokens [first, first + n).
  std::vector<float> run(Backend& be, int first, int n) {
    MoeExperts ex{Tensor{gate.data(), DType::f32, E * I, H},
                  Tensor{up.data(), DType::f32, E * I, H},
                  Tensor{down.data(), DType::f32, E * H, I}, E};
    const int R = n * k;
    MoeScratch s{Tensor{sx.data(), DType::f32, R, H},
                 Tensor{sg.data(), DType::f32, R, I},
                 Tensor{su.data(), DType::f32, R, I},
                 Tensor{sy.data(), DType::f32, R, H},
                 order.data(),
                 offsets.data()};
    std::vector<float> out(static_cast<size_t>(n) * H, -1.0f);
    be.moe_experts(Tensor{out.data(), DType::f32, n, H},
                   Tensor{x.data() + first * H, DType::f32, n, H}, ex,
                   Tensor{ids.data() + first * k, DType::i32, n, k},
                   Tensor{w.data() + first * k, DType::f32, n, k}, s);
    return out;
  }
};

TEST_CASE("moe_experts: grouped per-expert matmuls equal the per-token reference", "[ops][moe]") {
  auto be = cpu();
  MoeCase c(6, 2, 16, 8, 9, 1);
  const int k = c.k, H = c.H, I = c.I;
  const std::vector<float> out = c.run(*be, 0, c.T);
  for (int t = 0; t < c.T; ++t) {
    for (int h = 0; h < H; ++h) {
      double ref = 0;
      for (int j = 0; j < k; ++j) {
        const int e = c.ids[t * k + j];
        double y = 0;
        for (int i = 0; i < I; ++i) {
          double g = 0, u = 0;
          for (int col = 0; col < H; ++col) {
            g += double(c.gate[(e * I + i) * H + col]) * c.x[t * H + col];
            u += double(c.up[(e * I + i) * H + col]) * c.x[t * H + col];
          }
          y += double(c.down[(e * H + h) * I + i]) * (g / (1 + std::exp(-g)) * u);
        }
        ref += c.w[t * k + j] * y;
      }
      INFO("token " << t << " col " << h);
      REQUIRE(std::abs(out[t * H + h] - ref) <= 1e-5 + 1e-5 * std::abs(ref));
    }
  }
  // Batch == single: each token alone gives the same bits as in the batch.
  for (int t = 0; t < c.T; ++t) {
    const std::vector<float> one = c.run(*be, t, 1);
    REQUIRE(std::equal(one.begin(), one.end(), out.begin() + t * H));
  }
  // An expert id out of range is refused.
  c.ids[3] = c.E;
  CHECK_THROWS(c.run(*be, 0, c.T));
}

// Threads take whole experts when at least 4 experts per thread are active (a prefill); the
// matmuls inside run single-threaded. The output must be the bits of the one-thread run and of
// each token alone (2 active experts: the per-matmul threading), and the unrouted expert (NaN
// weights) must stay unread.
TEST_CASE("moe_experts: threads over experts give the one-thread bits", "[ops][moe]") {
  const int saved_threads = omp_get_max_threads();
  MoeCase c(20, 2, 48, 40, 33, 11);
  const std::vector<float> one =
      c.run(*make_backend(BackendKind::cpu, BackendOptions{0, 1}), 0, c.T);
  auto be = make_backend(BackendKind::cpu, BackendOptions{0, 2});
  const std::vector<float> two = c.run(*be, 0, c.T);
  for (float v : two) REQUIRE(std::isfinite(v));
  REQUIRE(two == one);
  for (int t = 0; t < c.T; ++t) {
    const std::vector<float> alone = c.run(*be, t, 1);
    REQUIRE(std::equal(alone.begin(), alone.end(), two.begin() + t * c.H));
  }
  omp_set_num_threads(saved_threads);
}

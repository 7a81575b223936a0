// The CUDA mixture-of-experts ops against their CPU twins: routing on well-separated scores (the
// same experts, weights to fp32 rounding), routing on equal scores (the CUDA kernel takes the
// lowest expert indices), and the experts (per-(token, slot) GEMVs) against the CPU backend's
// grouped GEMMs for a decode-sized and a prefill-sized batch.
#include <algorithm>
#include <cmath>

#include "cuda_test_util.h"

namespace tpinfer::test {
namespace {

constexpr double kAtol = 1e-2;
constexpr double kRtol = 1.6e-2;

TEST_CASE("cuda moe_route matches the CPU backend", "[cuda][moe]") {
  for (auto [T, E, k] : {std::tuple{1, 8, 2}, std::tuple{17, 128, 8}, std::tuple{5, 60, 4}}) {
    CAPTURE(T, E, k);
    // Well-separated scores: a permutation of 0..E-1 per token, scaled.
    std::vector<float> logits(static_cast<size_t>(T) * E);
    std::mt19937 rng(7 + T);
    for (int t = 0; t < T; ++t) {
      std::vector<int> perm(E);
      for (int e = 0; e < E; ++e) perm[e] = e;
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int e = 0; e < E; ++e) logits[t * E + e] = 0.25f * static_cast<float>(perm[e]) - 3.0f;
    }
    for (bool normalize : {true, false}) {
      Arena c(cpu_backend()), g(cuda_backend());
      Tensor lc = c.from_floats(DType::f32, T, E, logits),
             lg = g.from_floats(DType::f32, T, E, logits);
      Tensor ic = c.empty(DType::i32, T, k), ig = g.empty(DType::i32, T, k);
      Tensor wc = c.empty(DType::f32, T, k), wg = g.empty(DType::f32, T, k);
      c.backend().moe_route(ic, wc, lc, normalize);
      g.backend().moe_route(ig, wg, lg, normalize);
      CHECK(g.read(ig) == c.read(ic));
      REQUIRE_CLOSE("moe_route weights", g.read(wg), c.read(wc), 1e-6, 1e-5);
    }
  }
  // Equal scores: the lowest expert indices, each 1/k after renormalisation.
  Arena g(cuda_backend());
  Tensor l = g.from_floats(DType::f32, 1, 8, std::vector<float>(8, 0.0f));
  Tensor ids = g.empty(DType::i32, 1, 3), w = g.empty(DType::f32, 1, 3);
  g.backend().moe_route(ids, w, l, true);
  CHECK(g.read(ids) == std::vector<float>{0, 1, 2});
}

TEST_CASE("cuda moe_experts matches the CPU backend", "[cuda][moe]") {
  const int E = 8, k = 2, H = 256, I = 96;
  const float scale = 1.0f / std::sqrt(static_cast<float>(H));
  const auto gate = random_bf16(static_cast<size_t>(E) * I * H, 61, -scale, scale);
  const auto up = random_bf16(static_cast<size_t>(E) * I * H, 62, -scale, scale);
  const auto down = random_bf16(static_cast<size_t>(E) * H * I, 63, -scale, scale);
  for (int T : {1, 4, 37}) {
    CAPTURE(T);
    const auto x = random_bf16(static_cast<size_t>(T) * H, 64 + T);
    std::vector<int32_t> ids(static_cast<size_t>(T) * k);
    std::vector<float> w(static_cast<size_t>(T) * k);
    std::mt19937 rng(65 + T);
    for (int t = 0; t < T; ++t) {
      ids[t * k] = static_cast<int32_t>(rng() % E);
      ids[t * k + 1] = static_cast<int32_t>((ids[t * k] + 1 + rng() % (E - 1)) % E);
      w[t * k] = 0.2f + 0.6f * static_cast<float>(rng() % 100) / 100.0f;
      w[t * k + 1] = 1.0f - w[t * k];
    }
    std::vector<float> idf(ids.begin(), ids.end());
    Tensor out[2];
    Arena c(cpu_backend()), g(cuda_backend());
    Arena* arenas[2] = {&c, &g};
    for (int b = 0; b < 2; ++b) {
      Arena& a = *arenas[b];
      const DType act = a.backend().act_dtype();
      MoeExperts ex{a.weight(E * I, H, gate), a.weight(E * I, H, up), a.weight(E * H, I, down), E};
      const int R = T * k;
      MoeScratch s{a.empty(act, R, H),
                   a.empty(act, R, I),
                   a.empty(act, R, I),
                   a.empty(act, R, H),
                   static_cast<int32_t*>(a.empty(DType::i32, 1, R).data),
                   static_cast<int32_t*>(a.empty(DType::i32, 1, E + 1).data)};
      out[b] = a.empty(act, T, H);
      a.backend().moe_experts(out[b], a.act(T, H, x), ex, a.from_floats(DType::i32, T, k, idf),
                              a.from_floats(DType::f32, T, k, w), s);
    }
    REQUIRE_CLOSE("moe_experts", g.read(out[1]), c.read(out[0]), kAtol, kRtol);
  }
}

}  // namespace
}  // namespace tpinfer::test

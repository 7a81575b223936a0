// The CUDA mixture-of-experts ops against their CPU twins: routing on well-separated scores (the
// same experts, weights to fp32 rounding), routing on equal scores (the CUDA kernel takes the
// lowest expert indices), and the experts (per-(token, slot) GEMVs; bf16 and int8 experts)
// against the CPU backend's grouped GEMMs for a decode-sized and a prefill-sized batch.
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

// Runs moe_experts on the CPU and the CUDA backend with the same routed tokens and experts made by
// make(arena, rows, cols, values), for a decode-sized and a prefill-sized batch.
template <typename MakeWeight>
void check_experts(MakeWeight make, double atol, double rtol) {
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
      MoeExperts ex{make(a, E * I, H, gate), make(a, E * I, H, up), make(a, E * H, I, down), E};
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
    REQUIRE_CLOSE("moe_experts", g.read(out[1]), c.read(out[0]), atol, rtol);
  }
}

TEST_CASE("cuda moe_experts matches the CPU backend", "[cuda][moe]") {
  check_experts([](Arena& a, int64_t rows, int64_t cols,
                   const std::vector<float>& v) { return a.weight(rows, cols, v); },
                kAtol, kRtol);
}

// int8 experts (--dtype int8): the same int8 data and scales on both backends, blocks of 32 and
// one scale per row (down's rows are 96 wide: 3 blocks). The CPU also rounds its activations to
// int8 blocks (each value by at most max|x| / 254) where the GPU dequantizes the weights only,
// hence the wider tolerance.
TEST_CASE("cuda moe_experts with int8 experts matches the CPU backend", "[cuda][moe][int8]") {
  for (int block : {32, 0}) {
    CAPTURE(block);
    check_experts(
        [block](Arena& a, int64_t rows, int64_t cols, const std::vector<float>& v) {
          Tensor t = a.empty(DType::i8, rows, cols);
          t.group = block > 0 ? block : cols;
          t.scales = a.empty(DType::f32, rows, t.n_groups()).data;
          std::vector<int8_t> q(v.size());
          std::vector<float> sc(static_cast<size_t>(rows * t.n_groups()));
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t g = 0; g < t.n_groups(); ++g) {
              const int64_t c0 = g * t.group, c1 = std::min(cols, c0 + t.group);
              float mx = 0.0f;
              for (int64_t c = c0; c < c1; ++c) mx = std::max(mx, std::fabs(v[r * cols + c]));
              const float s = mx > 0.0f ? mx / 127.0f : 1.0f;
              sc[r * t.n_groups() + g] = s;
              for (int64_t c = c0; c < c1; ++c)
                q[r * cols + c] = static_cast<int8_t>(std::lrint(v[r * cols + c] / s));
            }
          }
          a.backend().upload_int8_weight(t, q.data(), sc.data());
          return t;
        },
        3e-2, 3e-2);
  }
}

}  // namespace
}  // namespace tpinfer::test

// Every CPU backend op against a plain double-precision reference written from the definitions
// (HF's RMSNorm, rotate-half RoPE, causal GQA attention with a sliding window, SwiGLU), on random
// inputs of several shapes. Tolerance: |a - b| <= atol + rtol * |ref|.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "../lib/random_data.h"
#include "backend/backend.h"

using namespace tpinfer;

namespace {

Tensor view(std::vector<float>& v, int64_t rows, int64_t cols) {
  REQUIRE(static_cast<int64_t>(v.size()) == rows * cols);
  return Tensor{v.data(), DType::f32, rows, cols};
}

void require_close(const std::vector<float>& got, const std::vector<double>& ref, double atol,
                   double rtol) {
  REQUIRE(got.size() == ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i << ": got " << got[i] << ", reference " << ref[i]);
    REQUIRE(std::abs(got[i] - ref[i]) <= atol + rtol * std::abs(ref[i]));
  }
}

std::vector<double> ref_rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int rows,
                                int cols, double eps) {
  std::vector<double> out(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < cols; ++i) ss += double(x[r * cols + i]) * x[r * cols + i];
    const double inv = 1.0 / std::sqrt(ss / cols + eps);
    for (int i = 0; i < cols; ++i) out[r * cols + i] = x[r * cols + i] * inv * w[i];
  }
  return out;
}

// Rotate-half RoPE of one head vector in place (double).
// Rotate-half RoPE with inv_freq[j] (double math on the float table), cos/sin times factor.
void ref_rope(double* v, int hd, int pos, const std::vector<float>& inv_freq, double factor) {
  const int half = hd / 2;
  for (int j = 0; j < half; ++j) {
    const double a = pos * static_cast<double>(inv_freq[j]);
    const double c = std::cos(a) * factor, s = std::sin(a) * factor;
    const double x0 = v[j], x1 = v[j + half];
    v[j] = x0 * c - x1 * s;
    v[j + half] = x1 * c + x0 * s;
  }
}

}  // namespace

TEST_CASE("cpu rmsnorm and add_rmsnorm match the reference", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  for (auto [rows, cols] : {std::pair{1, 8}, std::pair{5, 64}, std::pair{3, 1000}}) {
    auto x = randn(rows * cols, 1 + cols), w = randn(cols, 2 + cols), d = randn(rows * cols, 3);
    std::vector<float> out(x.size());
    be->rmsnorm(view(out, rows, cols), view(x, rows, cols), view(w, 1, cols), 1e-5f);
    require_close(out, ref_rmsnorm(x, w, rows, cols, 1e-5), 1e-5, 1e-5);

    std::vector<float> sum(x.size());
    for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + d[i];
    auto resid = x;
    be->add_rmsnorm(view(out, rows, cols), view(resid, rows, cols), view(d, rows, cols),
                    view(w, 1, cols), 1e-6f);
    require_close(resid, std::vector<double>(sum.begin(), sum.end()), 0, 0);
    require_close(out, ref_rmsnorm(sum, w, rows, cols, 1e-6), 1e-5, 1e-5);
  }
}

TEST_CASE("cpu matmul matches the reference (out = in @ W^T)", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  for (auto [T, N, K] : {std::tuple{1, 7, 13}, std::tuple{4, 64, 64}, std::tuple{9, 33, 172}}) {
    auto in = randn(T * K, T), w = randn(N * K, N);
    std::vector<float> out(T * N);
    be->matmul(view(out, T, N), view(in, T, K), view(w, N, K));
    std::vector<double> ref(T * N);
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int k = 0; k < K; ++k) s += double(in[t * K + k]) * w[n * K + k];
        ref[t * N + n] = s;
      }
    require_close(out, ref, 1e-4, 1e-4);
  }
  SECTION("shape mismatch is an error") {
    std::vector<float> a(6), b(6), c(4);
    REQUIRE_THROWS_WITH(
        be->matmul(view(c, 2, 2), view(a, 2, 3), Tensor{b.data(), DType::f32, 3, 2}),
        Catch::Contains("do not agree"));
  }
}

TEST_CASE("cpu embed is vocab-parallel: rows outside the slice are zero", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  const int rows = 5, cols = 4, offset = 10;
  auto table = randn(rows * cols, 7);
  std::vector<int32_t> ids = {10, 14, 9, 15, 12};
  std::vector<float> out(ids.size() * cols);
  be->embed(view(out, ids.size(), cols), view(table, rows, cols), ids.data(), offset);
  for (size_t t = 0; t < ids.size(); ++t) {
    const int r = ids[t] - offset;
    for (int c = 0; c < cols; ++c) {
      const float expect = (r >= 0 && r < rows) ? table[r * cols + c] : 0.0f;
      REQUIRE(out[t * cols + c] == expect);
    }
  }
}

TEST_CASE("cpu qk_norm_rope matches HF rotate-half RoPE, with and without q/k norm", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  const int T = 3, nq = 4, nkv = 2, hd = 16;
  const float eps = 1e-6f;
  std::vector<int32_t> pos = {0, 7, 300};
  BatchView b;
  b.n_tokens = T;
  b.positions = pos.data();
  // Plain theta=1e6 frequencies, then a scaled table (every 3rd frequency / 8) with factor 1.2.
  std::vector<float> inv_freq(hd / 2), scaled(hd / 2);
  for (int j = 0; j < hd / 2; ++j) {
    inv_freq[j] = 1.0f / std::pow(1e6f, static_cast<float>(2 * j) / hd);
    scaled[j] = j % 3 == 0 ? inv_freq[j] / 8.0f : inv_freq[j];
  }
  for (int variant = 0; variant < 4; ++variant) {
    const bool with_norm = variant % 2 == 1;
    const std::vector<float>& table = variant < 2 ? inv_freq : scaled;
    const float factor = variant < 2 ? 1.0f : 1.2f;
    auto q = randn(T * nq * hd, 11), k = randn(T * nkv * hd, 12);
    auto qn = randn(hd, 13), kn = randn(hd, 14);
    auto q0 = q, k0 = k;
    Tensor empty;
    be->qk_norm_rope(view(q, T, nq * hd), view(k, T, nkv * hd), with_norm ? view(qn, 1, hd) : empty,
                     with_norm ? view(kn, 1, hd) : empty, b, hd, RopeTable{table.data(), factor},
                     eps);
    auto reference = [&](const std::vector<float>& src, const std::vector<float>& nw, int nh) {
      std::vector<double> out(src.size());
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < nh; ++h) {
          double* v = &out[(t * nh + h) * hd];
          const float* s = &src[(t * nh + h) * hd];
          double ss = 0;
          for (int i = 0; i < hd; ++i) ss += double(s[i]) * s[i];
          const double inv = with_norm ? 1.0 / std::sqrt(ss / hd + eps) : 1.0;
          for (int i = 0; i < hd; ++i) v[i] = s[i] * inv * (with_norm ? nw[i] : 1.0);
          ref_rope(v, hd, pos[t], table, factor);
        }
      return out;
    };
    require_close(q, reference(q0, qn, nq), 2e-4, 2e-4);
    require_close(k, reference(k0, kn, nkv), 2e-4, 2e-4);
  }
}

TEST_CASE("cpu add_bias adds the bias to every row", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  const int T = 5, N = 37;
  auto out = randn(T * N, 21), bias = randn(N, 22);
  const auto before = out;
  be->add_bias(view(out, T, N), view(bias, 1, N));
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) REQUIRE(out[t * N + n] == before[t * N + n] + bias[n]);
}

TEST_CASE("cpu kv_append + attention match causal GQA attention with a sliding window", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  const int n_blocks = 8, block_size = 4, nh = 8, nkv = 2, hd = 8;
  const int kv_dim = nkv * hd;
  for (int window : {0, 5}) {
    std::vector<float> kc(n_blocks * block_size * kv_dim), vc(kc.size());
    KvLayer cache{kc.data(), vc.data(), DType::f32, n_blocks, block_size, nkv, hd, 24, 2};
    // Prefill 20 tokens of the sequence in table row 1 (blocks 6 2 7 0 4, shuffled); row 0 is
    // never used. Then check every token's attention against the reference.
    const int T = 20, stride = 6;
    std::vector<int32_t> table = {-1, -1, -1, -1, -1, -1, 6, 2, 7, 0, 4, -1};
    auto q = randn(T * nh * hd, 21), k = randn(T * kv_dim, 22), v = randn(T * kv_dim, 23);
    std::vector<int32_t> pos(T), slots(T, 1);
    for (int t = 0; t < T; ++t) pos[t] = t;
    BatchView b{T, pos.data(), slots.data(), table.data(), stride, T - 1};
    be->kv_append(cache, view(k, T, kv_dim), view(v, T, kv_dim), b);
    std::vector<float> out(T * nh * hd);
    const float scale = 1.0f / std::sqrt(float(hd));
    be->attention(view(out, T, nh * hd), view(q, T, nh * hd), cache, b, nh, window, scale);
    std::vector<double> ref(out.size());
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < nh; ++h) {
        const int g = h / (nh / nkv);
        const int start = window > 0 ? std::max(0, t - window + 1) : 0;
        std::vector<double> s;
        double m = -1e300;
        for (int j = start; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i)
            d += double(q[(t * nh + h) * hd + i]) * k[j * kv_dim + g * hd + i];
          s.push_back(d * scale);
          m = std::max(m, s.back());
        }
        double z = 0;
        for (double& x : s) z += (x = std::exp(x - m));
        for (int i = 0; i < hd; ++i) {
          double acc = 0;
          for (int j = start; j <= t; ++j) acc += s[j - start] / z * v[j * kv_dim + g * hd + i];
          ref[(t * nh + h) * hd + i] = acc;
        }
      }
    require_close(out, ref, 1e-5, 1e-4);
    // Blocks 1, 3 and 5 were never written: the pool is still zero there.
    for (int blk : {1, 3, 5})
      for (int i = 0; i < block_size * kv_dim; ++i)
        REQUIRE(kc[blk * block_size * kv_dim + i] == 0.0f);
  }
}

TEST_CASE("cpu silu_mul and gather_rows", "[ops]") {
  auto be = make_backend(BackendKind::cpu, {});
  auto g = randn(100, 31, 3.0f), u = randn(100, 32);
  std::vector<float> out(100);
  be->silu_mul(view(out, 4, 25), view(g, 4, 25), view(u, 4, 25));
  std::vector<double> ref(100);
  for (int i = 0; i < 100; ++i) ref[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
  require_close(out, ref, 1e-6, 1e-5);

  auto in = randn(5 * 3, 33);
  std::vector<float> rows_out(2 * 3);
  std::vector<int32_t> rows = {4, 1};
  be->gather_rows(view(rows_out, 2, 3), view(in, 5, 3), rows.data());
  for (int c = 0; c < 3; ++c) {
    REQUIRE(rows_out[c] == in[4 * 3 + c]);
    REQUIRE(rows_out[3 + c] == in[1 * 3 + c]);
  }
}

TEST_CASE("cpu backend keeps bf16 weights as bf16: upload, matmul and embed", "[ops]") {
  BackendOptions opts;
  opts.stored_weight_dtype = DType::bf16;
  auto be = make_backend(BackendKind::cpu, opts);
  REQUIRE(be->weight_dtype() == DType::bf16);
  const int T = 3, N = 17, K = 40;
  auto in = randn(T * K, 41), w = randn(N * K, 42);
  std::vector<uint16_t> wb(N * K);
  Tensor wt{wb.data(), DType::bf16, N, K};
  be->upload_weight(wt, w.data(), DType::f32);
  std::vector<float> out(T * N);
  be->matmul(view(out, T, N), view(in, T, K), wt);
  // The vdpbf16ps path (the default where the CPU has AVX512-BF16) multiplies bf16 activations,
  // as torch does in bf16: its reference rounds them too (tests/unit/test_cpu_gemm.cpp bounds
  // the difference to f32 activations).
  const bool bf16_acts = be->describe().find("matmul avx512bf16") != std::string::npos;
  auto xr = in;
  if (bf16_acts)
    for (float& v : xr) v = bf16_to_f32(f32_to_bf16(v));
  std::vector<double> ref(T * N);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k)
        s += double(xr[t * K + k]) * bf16_to_f32(f32_to_bf16(w[n * K + k]));
      ref[t * N + n] = s;
    }
  require_close(out, ref, 1e-4, 1e-4);
  // Round to nearest even, as torch does: 1 + 2^-8 is a tie that rounds down to 1.
  REQUIRE(f32_to_bf16(1.0f + 1.0f / 256) == f32_to_bf16(1.0f));
  REQUIRE(bf16_to_f32(f32_to_bf16(3.140625f)) == 3.140625f);

  std::vector<int32_t> ids = {2, 20, 0};
  std::vector<float> emb(3 * K);
  be->embed(view(emb, 3, K), Tensor{wb.data(), DType::bf16, N, K}, ids.data(), 0);
  for (int c = 0; c < K; ++c) {
    REQUIRE(emb[c] == bf16_to_f32(wb[2 * K + c]));
    REQUIRE(emb[K + c] == 0.0f);  // id 20 is outside this rank's 17 rows
    REQUIRE(emb[2 * K + c] == bf16_to_f32(wb[c]));
  }
}

TEST_CASE("cpu matmul is batch-invariant: each row equals the same row computed alone", "[ops]") {
  for (DType wd : {DType::f32, DType::bf16}) {
    BackendOptions opts;
    opts.stored_weight_dtype = wd;
    auto be = make_backend(BackendKind::cpu, opts);
    const int T = 11, N = 19, K = 77;  // K not a multiple of 8: the tail path too
    auto in = randn(T * K, 51), w = randn(N * K, 52);
    std::vector<uint16_t> wb(N * K);
    Tensor wt = wd == DType::bf16 ? Tensor{wb.data(), DType::bf16, N, K} : view(w, N, K);
    if (wd == DType::bf16) be->upload_weight(wt, w.data(), DType::f32);
    std::vector<float> all(T * N), one(N);
    be->matmul(view(all, T, N), view(in, T, K), wt);
    for (int t = 0; t < T; ++t) {
      Tensor row{in.data() + t * K, DType::f32, 1, K};
      be->matmul(view(one, 1, N), row, wt);
      for (int n = 0; n < N; ++n) REQUIRE(all[t * N + n] == one[n]);
    }
  }
}

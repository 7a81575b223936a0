// Every CUDA op against the CPU backend on random inputs of several shapes. Inputs are rounded
// to bf16 first, so both backends see the same values; the CUDA side keeps bf16 activations
// and the tolerances below are what bf16 storage of the result allows (a bf16 ulp is 2^-8
// relative; Hugging Face's RMSNorm order rounds twice).
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/gemm_int8.h"
#include "cuda/kernels.h"
#include "cuda_test_util.h"

namespace tpinfer::test {
namespace {

// One bf16 rounding of a value of magnitude ~1 plus fp32 reordering.
constexpr double kAtol = 1e-2;
constexpr double kRtol = 1.6e-2;

TEST_CASE("cuda embed gathers rows of the local vocab slice and zeros the rest", "[cuda]") {
  for (int hidden : {64, 36, 2560}) {
    CAPTURE(hidden);
    const int vocab_rows = 97, offset = 20, T = 9;
    const std::vector<float> table = random_bf16(static_cast<size_t>(vocab_rows) * hidden, 1);
    const std::vector<int32_t> ids = {20, 0, 116, 117, 50, 19, 200, 21, 116};
    Arena c(cpu_backend()), g(cuda_backend());
    Tensor tc = c.weight(vocab_rows, hidden, table), tg = g.weight(vocab_rows, hidden, table);
    Tensor oc = c.empty(c.backend().act_dtype(), T, hidden);
    Tensor og = g.empty(DType::bf16, T, hidden);
    c.backend().embed(oc, tc, c.ints(ids), offset);
    g.backend().embed(og, tg, g.ints(ids), offset);
    REQUIRE_CLOSE("embed", g.read(og), c.read(oc), 0.0, 0.0);
  }
}

TEST_CASE("cuda rmsnorm and add_rmsnorm match the CPU backend", "[cuda]") {
  for (int rows : {1, 5}) {
    for (int cols : {64, 100, 2560, 4096}) {
      CAPTURE(rows, cols);
      const float eps = 1e-6f;
      const auto x = random_bf16(static_cast<size_t>(rows) * cols, 11, -2.0f, 2.0f);
      const auto d = random_bf16(static_cast<size_t>(rows) * cols, 12);
      const auto w = random_bf16(cols, 13, 0.5f, 1.5f);
      Arena c(cpu_backend()), g(cuda_backend());
      Tensor wc = c.weight(1, cols, w), wg = g.weight(1, cols, w);
      Tensor xc = c.act(rows, cols, x), xg = g.act(rows, cols, x);
      Tensor oc = c.empty(c.backend().act_dtype(), rows, cols);
      Tensor og = g.empty(DType::bf16, rows, cols);
      c.backend().rmsnorm(oc, xc, wc, eps);
      g.backend().rmsnorm(og, xg, wg, eps);
      REQUIRE_CLOSE("rmsnorm", g.read(og), c.read(oc), kAtol, kRtol);

      Tensor dc = c.act(rows, cols, d), dg = g.act(rows, cols, d);
      c.backend().add_rmsnorm(oc, xc, dc, wc, eps);
      g.backend().add_rmsnorm(og, xg, dg, wg, eps);
      REQUIRE_CLOSE("add_rmsnorm residual", g.read(xg), c.read(xc), 1e-6, 8e-3);
      REQUIRE_CLOSE("add_rmsnorm out", g.read(og), c.read(oc), kAtol, kRtol);

      // In place (out aliases in) must give the same result.
      g.backend().rmsnorm(xg, xg, wg, eps);
      c.backend().rmsnorm(xc, xc, wc, eps);
      REQUIRE_CLOSE("rmsnorm in place", g.read(xg), c.read(xc), kAtol, kRtol);
    }
  }
}

TEST_CASE("cuda matmul matches the CPU backend on every path", "[cuda]") {
  struct Shape {
    int n, k;
  };
  CudaBackend& cb = cuda_backend();
  const CudaMatmulPath saved = cb.matmul_path();
  for (CudaMatmulPath path : {CudaMatmulPath::automatic, CudaMatmulPath::gemv,
                              CudaMatmulPath::cublaslt, CudaMatmulPath::cublas}) {
    for (int t : {1, 3, 8, 33}) {
      // The GEMV splits rows along k when they are few: 256 x 512 in 2, 301 x 1032 in 4 (a
      // partial last block, a tail group), 40 x 2560 in 8; the others in 1.
      for (Shape s :
           {Shape{256, 512}, Shape{96, 136}, Shape{1000, 64}, Shape{40, 2560}, Shape{301, 1032}}) {
        for (DType out_dtype : {DType::bf16, DType::f32}) {
          CAPTURE(cuda_matmul_path_name(path), t, s.n, s.k, dtype_name(out_dtype));
          cb.set_matmul_path(path);
          const float scale = 1.0f / std::sqrt(static_cast<float>(s.k));
          const auto x = random_bf16(static_cast<size_t>(t) * s.k, 21);
          const auto w = random_bf16(static_cast<size_t>(s.n) * s.k, 22, -scale, scale);
          Arena c(cpu_backend()), g(cb);
          Tensor wc = c.weight(s.n, s.k, w), wg = g.weight(s.n, s.k, w);
          Tensor xc = c.act(t, s.k, x), xg = g.act(t, s.k, x);
          Tensor oc = c.empty(DType::f32, t, s.n);
          Tensor og = g.empty(out_dtype, t, s.n);
          c.backend().matmul(oc, xc, wc);
          g.backend().matmul(og, xg, wg);
          REQUIRE_CLOSE("matmul", g.read(og), c.read(oc), out_dtype == DType::f32 ? 2e-3 : kAtol,
                        out_dtype == DType::f32 ? 1e-3 : kRtol);
        }
      }
    }
  }
  cb.set_matmul_path(saved);
}

TEST_CASE("cuda matmul on row views that are not 256-byte aligned", "[cuda]") {
  // Activations one row into a buffer (K = 136: 272-byte rows) and logits one row in, as when
  // the engine projects a slice of a larger scratch buffer.
  CudaBackend& cb = cuda_backend();
  const CudaMatmulPath saved = cb.matmul_path();
  const int t = 5, n = 96, k = 136;
  const auto x = random_bf16(static_cast<size_t>(t + 1) * k, 25);
  const auto w = random_bf16(static_cast<size_t>(n) * k, 26, -0.1f, 0.1f);
  for (CudaMatmulPath path : {CudaMatmulPath::cublaslt, CudaMatmulPath::cublas}) {
    CAPTURE(cuda_matmul_path_name(path));
    cb.set_matmul_path(path);
    Arena c(cpu_backend()), g(cb);
    Tensor wc = c.weight(n, k, w), wg = g.weight(n, k, w);
    Tensor xc = c.act(t + 1, k, x), xg = g.act(t + 1, k, x);
    Tensor oc = c.empty(DType::f32, t, n), og = g.empty(DType::f32, t + 1, n);
    const Tensor xc_view{static_cast<char*>(xc.data) + xc.row(1).bytes(), xc.dtype, t, k};
    const Tensor xg_view{static_cast<char*>(xg.data) + xg.row(1).bytes(), xg.dtype, t, k};
    const Tensor og_view{static_cast<char*>(og.data) + og.row(1).bytes(), og.dtype, t, n};
    c.backend().matmul(oc, xc_view, wc);
    g.backend().matmul(og_view, xg_view, wg);
    REQUIRE_CLOSE("matmul on views", g.read(og_view), c.read(oc), 2e-3, 1e-3);
  }
  cb.set_matmul_path(saved);
}

TEST_CASE("cuda qk_norm_rope matches the CPU backend", "[cuda]") {
  for (int hd : {64, 128}) {
    for (bool norm : {false, true}) {
      // Plain tables for two thetas, then a scaled one (every 3rd frequency / 8, as llama3 does
      // to low frequencies) with an attention factor (yarn / longrope).
      for (int variant = 0; variant < 3; ++variant) {
        const float theta = variant == 0 ? 1e4f : 1e6f;
        const float factor = variant == 2 ? 1.2f : 1.0f;
        std::vector<float> inv_freq(hd / 2);
        for (int i = 0; i < hd / 2; ++i) {
          inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / hd);
          if (variant == 2 && i % 3 == 0) inv_freq[i] /= 8.0f;
        }
        CAPTURE(hd, norm, variant);
        const int T = 7, nh = 8, nkv = 2;
        const std::vector<int32_t> pos = {0, 1, 17, 511, 4095, 30000, 40959};
        const auto q = random_bf16(static_cast<size_t>(T) * nh * hd, 31, -3.0f, 3.0f);
        const auto k = random_bf16(static_cast<size_t>(T) * nkv * hd, 32, -3.0f, 3.0f);
        const auto qn = random_bf16(hd, 33, 0.5f, 1.5f);
        const auto kn = random_bf16(hd, 34, 0.5f, 1.5f);
        Arena c(cpu_backend()), g(cuda_backend());
        Tensor qc = c.act(T, nh * hd, q), qg = g.act(T, nh * hd, q);
        Tensor kc = c.act(T, nkv * hd, k), kg = g.act(T, nkv * hd, k);
        Tensor qnc, knc, qng, kng;
        if (norm) {
          qnc = c.weight(1, hd, qn);
          knc = c.weight(1, hd, kn);
          qng = g.weight(1, hd, qn);
          kng = g.weight(1, hd, kn);
        }
        const Tensor fc = c.from_floats(DType::f32, 1, hd / 2, inv_freq);
        const Tensor fg = g.from_floats(DType::f32, 1, hd / 2, inv_freq);
        BatchView bc{T, c.ints(pos), c.ints(std::vector<int32_t>(T, 0)), nullptr, 0, 40959};
        BatchView bg{T, g.ints(pos), g.ints(std::vector<int32_t>(T, 0)), nullptr, 0, 40959};
        c.backend().qk_norm_rope(qc, kc, qnc, knc, bc, hd,
                                 RopeTable{static_cast<const float*>(fc.data), factor}, 1e-6f);
        g.backend().qk_norm_rope(qg, kg, qng, kng, bg, hd,
                                 RopeTable{static_cast<const float*>(fg.data), factor}, 1e-6f);
        // At position 40959 an fp32 angle carries ~4e-3 rad of rounding in either backend.
        REQUIRE_CLOSE("rope q", g.read(qg), c.read(qc), 3e-2, 2e-2);
        REQUIRE_CLOSE("rope k", g.read(kg), c.read(kc), 3e-2, 2e-2);
      }
    }
  }
}

TEST_CASE("cuda add_bias matches the CPU backend", "[cuda]") {
  for (int cols : {96, 7, 2560}) {
    CAPTURE(cols);
    const int rows = 5;
    const auto x = random_bf16(static_cast<size_t>(rows) * cols, 61, -4.0f, 4.0f);
    const auto bias = random_bf16(cols, 62, -1.0f, 1.0f);
    Arena c(cpu_backend()), g(cuda_backend());
    Tensor xc = c.act(rows, cols, x), xg = g.act(rows, cols, x);
    Tensor bc = c.act(1, cols, bias), bg = g.act(1, cols, bias);
    c.backend().add_bias(xc, bc);
    g.backend().add_bias(xg, bg);
    REQUIRE_CLOSE("add_bias", g.read(xg), c.read(xc), kAtol, kRtol);
  }
}

TEST_CASE("cuda silu_mul matches the CPU backend", "[cuda]") {
  for (int n : {1000, 9728, 7}) {
    CAPTURE(n);
    const auto a = random_bf16(n, 41, -6.0f, 6.0f);
    const auto b = random_bf16(n, 42, -2.0f, 2.0f);
    Arena c(cpu_backend()), g(cuda_backend());
    Tensor ac = c.act(1, n, a), ag = g.act(1, n, a), bc = c.act(1, n, b), bg = g.act(1, n, b);
    Tensor oc = c.empty(c.backend().act_dtype(), 1, n), og = g.empty(DType::bf16, 1, n);
    c.backend().silu_mul(oc, ac, bc);
    g.backend().silu_mul(og, ag, bg);
    REQUIRE_CLOSE("silu_mul", g.read(og), c.read(oc), kAtol, kRtol);
  }
}

// The fused gate/up projection's activation (rows [gate | up]) and the column copies that split
// the fused qkv output, against the CPU backend (silu_mul_fused) and bit for bit (copy_cols).
TEST_CASE("cuda silu_mul_fused and copy_cols match the CPU backend", "[cuda][fused]") {
  for (int rows : {1, 5}) {
    for (int I : {9728, 40, 7}) {
      CAPTURE(rows, I);
      const auto gu = random_bf16(static_cast<size_t>(rows) * 2 * I, 43, -6.0f, 6.0f);
      Arena c(cpu_backend()), g(cuda_backend());
      Tensor tc = c.act(rows, 2 * I, gu), tg = g.act(rows, 2 * I, gu);
      Tensor oc = c.empty(c.backend().act_dtype(), rows, I), og = g.empty(DType::bf16, rows, I);
      c.backend().silu_mul_fused(oc, tc);
      g.backend().silu_mul_fused(og, tg);
      REQUIRE_CLOSE("silu_mul_fused", g.read(og), c.read(oc), kAtol, kRtol);
      const int first = I / 2 + 1, n = I;
      Tensor pc = c.empty(c.backend().act_dtype(), rows, n), pg = g.empty(DType::bf16, rows, n);
      c.backend().copy_cols(pc, tc, first);
      g.backend().copy_cols(pg, tg, first);
      REQUIRE_CLOSE("copy_cols", g.read(pg), c.read(pc), 0.0, 0.0);
    }
  }
}

// One matmul over a rank's [q | k | v] rows (Qwen3-4B's tp-1 shapes: 4096 + 1024 + 1024 rows of
// 2560) equals the CPU backend's separate q, k and v matmuls column range by column range, with
// bf16 and with int8 weights (scales concatenated like the rows), at 1 token and 5.
TEST_CASE("cuda fused qkv projection matches the separate CPU projections", "[cuda][fused]") {
  const int K = 2560;
  const int rows[3] = {4096, 1024, 1024}, first[3] = {0, 4096, 5120}, N = 6144;
  for (bool int8 : {false, true}) {
    for (int t : {1, 5}) {
      CAPTURE(int8, t);
      const std::vector<float> w = random_bf16(static_cast<size_t>(N) * K, 51, -0.05f, 0.05f);
      std::mt19937 rng(52);
      std::uniform_int_distribution<int> qd(-127, 127);
      std::uniform_real_distribution<float> sd(0.001f, 0.02f);
      std::vector<int8_t> q(static_cast<size_t>(N) * K);
      for (int8_t& v : q) v = static_cast<int8_t>(qd(rng));
      std::vector<float> sc(static_cast<size_t>(N) * (K / 32));
      for (float& v : sc) v = sd(rng);
      const std::vector<float> x = random_bf16(static_cast<size_t>(t) * K, 53);
      Arena c(cpu_backend()), g(cuda_backend());
      auto weight = [&](Arena& a, int row0, int n) {
        if (!int8) {
          return a.weight(n, K,
                          std::vector<float>(w.begin() + static_cast<ptrdiff_t>(row0) * K,
                                             w.begin() + static_cast<ptrdiff_t>(row0 + n) * K));
        }
        Tensor wt = a.empty(DType::i8, n, K);
        wt.group = 32;
        wt.scales = a.empty(DType::f32, n, K / 32).data;
        a.backend().upload_int8_weight(wt, q.data() + static_cast<size_t>(row0) * K,
                                       sc.data() + static_cast<size_t>(row0) * (K / 32));
        return wt;
      };
      Tensor xc = c.act(t, K, x), xg = g.act(t, K, x);
      Tensor qkv = g.empty(DType::bf16, t, N);
      g.backend().matmul(qkv, xg, weight(g, 0, N));
      for (int p = 0; p < 3; ++p) {
        CAPTURE(p);
        Tensor oc = c.empty(DType::f32, t, rows[p]);
        c.backend().matmul(oc, xc, weight(c, first[p], rows[p]));
        Tensor og = g.empty(DType::bf16, t, rows[p]);
        g.backend().copy_cols(og, qkv, first[p]);
        const double atol = int8 ? 0.01 * std::sqrt(static_cast<double>(K)) : kAtol;
        REQUIRE_CLOSE("fused qkv column range", g.read(og), c.read(oc), atol, kRtol);
      }
    }
  }
}

TEST_CASE("cuda gather_rows and convert", "[cuda]") {
  Arena g(cuda_backend());
  const int rows = 6;
  for (int cols : {8, 5, 2560}) {
    CAPTURE(cols);
    const auto x = random_bf16(static_cast<size_t>(rows) * cols, 51);
    const std::vector<int32_t> pick = {5, 0, 3, 3};
    for (DType d : {DType::bf16, DType::f32}) {
      Tensor in = g.from_floats(d, rows, cols, x);
      Tensor out = g.empty(d, static_cast<int64_t>(pick.size()), cols);
      g.backend().gather_rows(out, in, g.ints(pick));
      std::vector<float> want;
      for (int r : pick) want.insert(want.end(), x.begin() + r * cols, x.begin() + (r + 1) * cols);
      REQUIRE_CLOSE("gather_rows", g.read(out), want, 0.0, 0.0);
    }
    // bf16 -> f32 is exact; f32 -> bf16 / f16 round to nearest even like core/dtype.h.
    std::vector<float> wide = random_bf16(static_cast<size_t>(rows) * cols, 52);
    for (float& v : wide) v *= 1.0f + 1.0f / 512;  // not representable in bf16
    Tensor f = g.from_floats(DType::f32, rows, cols, wide);
    Tensor b = g.empty(DType::bf16, rows, cols), h = g.empty(DType::f16, rows, cols);
    Tensor back = g.empty(DType::f32, rows, cols);
    g.backend().convert(b, f);
    g.backend().convert(h, f);
    std::vector<float> want_b(wide.size()), want_h(wide.size());
    for (size_t i = 0; i < wide.size(); ++i) {
      want_b[i] = bf16_to_f32(f32_to_bf16(wide[i]));
      want_h[i] = f16_to_f32(f32_to_f16(wide[i]));
    }
    REQUIRE_CLOSE("convert f32->bf16", g.read(b), want_b, 0.0, 0.0);
    REQUIRE_CLOSE("convert f32->f16", g.read(h), want_h, 0.0, 0.0);
    g.backend().convert(back, b);
    REQUIRE_CLOSE("convert bf16->f32", g.read(back), want_b, 0.0, 0.0);
  }
}

TEST_CASE("cuda upload_weight converts f32, f16 and bf16 host data to bf16", "[cuda]") {
  Arena g(cuda_backend());
  const int n = 3000;
  std::vector<float> v = random_bf16(n, 61, -4.0f, 4.0f);
  for (float& x : v) x *= 1.0f + 1.0f / 300;
  std::vector<float> want(n);
  for (int i = 0; i < n; ++i) want[i] = bf16_to_f32(f32_to_bf16(v[i]));
  Tensor t = g.empty(DType::bf16, 30, 100);
  g.backend().upload_weight(t, v.data(), DType::f32);
  REQUIRE_CLOSE("upload f32", g.read(t), want, 0.0, 0.0);
  std::vector<uint16_t> h(n), b(n);
  std::vector<float> want_h(n);
  for (int i = 0; i < n; ++i) {
    h[i] = f32_to_f16(v[i]);
    b[i] = f32_to_bf16(v[i]);
    want_h[i] = bf16_to_f32(f32_to_bf16(f16_to_f32(h[i])));
  }
  g.backend().upload_weight(t, h.data(), DType::f16);
  REQUIRE_CLOSE("upload f16", g.read(t), want_h, 0.0, 0.0);
  g.backend().upload_weight(t, b.data(), DType::bf16);
  REQUIRE_CLOSE("upload bf16", g.read(t), want, 0.0, 0.0);
}

TEST_CASE("cuda argmax picks the largest logit, lowest index on ties", "[cuda]") {
  Arena g(cuda_backend());
  const int rows = 3, cols = 151936, offset = 1000;
  std::vector<float> logits = random_bf16(static_cast<size_t>(rows) * cols, 71, -10.0f, 10.0f);
  logits[0 * cols + 77] = 50.0f;
  logits[0 * cols + 150000] = 50.0f;  // tie: 77 wins
  logits[1 * cols + cols - 1] = 60.0f;
  logits[2 * cols + 5] = std::numeric_limits<float>::quiet_NaN();  // never wins
  std::vector<int32_t> want(rows);
  std::vector<float> want_v(rows);
  for (int r = 0; r < rows; ++r) {
    const float* row = logits.data() + static_cast<size_t>(r) * cols;
    int best = -1;
    for (int c = 0; c < cols; ++c) {
      if (std::isnan(row[c])) continue;
      if (best < 0 || row[c] > row[best]) best = c;  // strict: the lowest index keeps a tie
    }
    want[r] = best + offset;
    want_v[r] = row[best];
  }
  Tensor l = g.from_floats(DType::f32, rows, cols, logits);
  Tensor idx = g.empty(DType::i32, rows, 1), val = g.empty(DType::f32, rows, 1);
  cuda_backend().argmax(idx, val, l, offset);
  const auto got = g.read(idx);
  for (int r = 0; r < rows; ++r) CHECK(static_cast<int32_t>(got[r]) == want[r]);
  REQUIRE_CLOSE("argmax value", g.read(val), want_v, 0.0, 0.0);
}

// The int8 GEMV (kernels/cuda/gemv_int8.cu) against its CPU twin: the same int8 weights and
// scales, dequantized and multiplied in double on the host; activations bf16 or f32, output f32
// or bf16, per-block (32) and per-channel scales, 1..8 tokens. And the CPU backend's int8
// matmul (which also quantizes the activations) within its activation-rounding error.
TEST_CASE("cuda int8 gemv matches the CPU reference", "[cuda][int8]") {
  CudaBackend& cb = cuda_backend();
  struct Shape {
    int n, k;
  };
  for (Shape s :
       {Shape{256, 512}, Shape{97, 4096}, Shape{1000, 64}, Shape{33, 2560}, Shape{5, 1040}}) {
    for (int group : {32, s.k}) {
      for (int t : {1, 3, 8}) {
        for (bool x_f32 : {false, true}) {
          for (bool out_f32 : {true, false}) {
            CAPTURE(s.n, s.k, group, t, x_f32, out_f32);
            const int ng = (s.k + group - 1) / group;
            std::mt19937 rng(s.n * 131 + s.k + group + t);
            std::uniform_int_distribution<int> qd(-127, 127);
            std::uniform_real_distribution<float> sd(0.001f, 0.02f);
            std::vector<int8_t> q(static_cast<size_t>(s.n) * s.k);
            for (int8_t& v : q) v = static_cast<int8_t>(qd(rng));
            std::vector<float> sc(static_cast<size_t>(s.n) * ng);
            for (float& v : sc) v = sd(rng);
            const std::vector<float> x = random_bf16(static_cast<size_t>(t) * s.k, 77 + t);
            std::vector<uint16_t> xb(x.size());
            for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);

            void* dq = cb.alloc(q.size());
            void* ds = cb.alloc(sizeof(float) * sc.size());
            void* dx = cb.alloc(x_f32 ? sizeof(float) * x.size() : 2 * x.size());
            void* dout = cb.alloc(sizeof(float) * t * s.n);
            cb.copy_to_device(dq, q.data(), q.size());
            cb.copy_to_device(ds, sc.data(), sizeof(float) * sc.size());
            if (x_f32) {
              cb.copy_to_device(dx, x.data(), sizeof(float) * x.size());
            } else {
              cb.copy_to_device(dx, xb.data(), 2 * xb.size());
            }
            gpu::gemv_int8(dout, out_f32, dx, x_f32, static_cast<const int8_t*>(dq),
                           static_cast<const float*>(ds), group, t, s.n, s.k, cb.stream());
            REQUIRE(cudaGetLastError() == cudaSuccess);
            cb.synchronize();
            std::vector<float> got(static_cast<size_t>(t) * s.n);
            if (out_f32) {
              cb.copy_to_host(got.data(), dout, sizeof(float) * got.size());
            } else {
              std::vector<uint16_t> gb(got.size());
              cb.copy_to_host(gb.data(), dout, 2 * gb.size());
              for (size_t i = 0; i < gb.size(); ++i) got[i] = bf16_to_f32(gb[i]);
            }
            for (void* p : {dq, ds, dx, dout}) cb.free(p);

            std::vector<float> cpu_int8(static_cast<size_t>(t) * s.n);
            cpu::gemm_int8(cpu::Int8Path::portable, cpu_int8.data(), x.data(), q.data(), sc.data(),
                           group, t, s.n, s.k);
            for (int r = 0; r < t; ++r) {
              for (int n = 0; n < s.n; ++n) {
                double ref = 0, mag = 0, act_bound = 0;
                for (int k = 0; k < s.k; ++k) {
                  const double wd = double(q[static_cast<size_t>(n) * s.k + k]) *
                                    sc[static_cast<size_t>(n) * ng + k / group];
                  const double xv = x[static_cast<size_t>(r) * s.k + k];
                  ref += wd * xv;
                  mag += std::fabs(wd * xv);
                  act_bound += std::fabs(wd);
                }
                const double g = got[static_cast<size_t>(r) * s.n + n];
                const double tol = 1e-5 * mag + 1e-6 + (out_f32 ? 0.0 : std::fabs(ref) / 128);
                INFO("row " << r << " col " << n << " gpu " << g << " reference " << ref);
                REQUIRE(std::fabs(g - ref) <= tol);
                // The CPU int8 path rounds each activation by at most max|x| / 254 (|x| <= 1).
                const double c = cpu_int8[static_cast<size_t>(r) * s.n + n];
                REQUIRE(std::fabs(c - ref) <= act_bound / 254.0 + 1e-5 * mag + 1e-6);
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("cuda memory accounting and refusals", "[cuda]") {
  CudaBackend& cb = cuda_backend();
  const size_t before = cb.allocated_bytes();
  void* p = cb.alloc(12345);
  CHECK(cb.allocated_bytes() == before + 12345);
  const DeviceMemory m = cb.memory();
  CHECK(m.total_bytes > 0);
  CHECK(m.free_bytes <= m.total_bytes);
  cb.free(p);
  CHECK(cb.allocated_bytes() == before);
  // A wrong dtype is a tier-1 error that names the op.
  Arena g(cb);
  Tensor f = g.empty(DType::f32, 2, 8);
  Tensor w = g.empty(DType::bf16, 1, 8);
  REQUIRE_THROWS_WITH(cb.rmsnorm(f, f, w, 1e-5f), Catch::Contains("rmsnorm"));
  // Out-of-memory names the size.
  REQUIRE_THROWS_WITH(cb.alloc(size_t{1} << 50), Catch::Contains("out of memory"));
}

// The backend's int8 projection (upload_int8_weight + matmul on an i8 weight): chunks of 8 tokens
// through the GEMV, k with and without the 16-byte fast path (172: a stories260K down_proj), the
// same int8 data on the CPU backend (which also quantizes its activations, hence the tolerance).
TEST_CASE("cuda matmul with int8 weights matches the CPU backend", "[cuda][int8]") {
  CudaBackend& cb = cuda_backend();
  REQUIRE(cb.supports_int8_weights());
  for (int t : {1, 5, 8, 9, 20}) {
    for (int k : {64, 172, 2560}) {
      for (int group : {32, k}) {
        for (DType out_dtype : {DType::bf16, DType::f32}) {
          const int n = 67;
          CAPTURE(t, k, group, dtype_name(out_dtype));
          const int ng = (k + group - 1) / group;
          std::mt19937 rng(t * 7 + k + group);
          std::uniform_int_distribution<int> qd(-127, 127);
          std::uniform_real_distribution<float> sd(0.001f, 0.02f);
          std::vector<int8_t> q(static_cast<size_t>(n) * k);
          for (int8_t& v : q) v = static_cast<int8_t>(qd(rng));
          std::vector<float> sc(static_cast<size_t>(n) * ng);
          for (float& v : sc) v = sd(rng);
          const std::vector<float> x = random_bf16(static_cast<size_t>(t) * k, 5 + t);
          Arena c(cpu_backend()), g(cb);
          Tensor xc = c.act(t, k, x), xg = g.act(t, k, x);
          auto int8_weight = [&](Backend& be) {
            Tensor w{be.alloc(q.size()), DType::i8, n, k};
            w.group = group;
            w.scales = be.alloc(sizeof(float) * sc.size());
            be.upload_int8_weight(w, q.data(), sc.data());
            return w;
          };
          Tensor wc = int8_weight(c.backend()), wg = int8_weight(cb);
          Tensor oc = c.empty(DType::f32, t, n), og = g.empty(out_dtype, t, n);
          c.backend().matmul(oc, xc, wc);
          cb.matmul(og, xg, wg);
          // CPU: activations rounded to int8 (each by at most max|x| / 254, |x| <= 1; about
          // 0.002 x sqrt(k) summed over k): 5 sigma.
          const double atol = 0.01 * std::sqrt(static_cast<double>(k));
          REQUIRE_CLOSE("int8 matmul", g.read(og), c.read(oc), atol, kRtol);
          for (Backend* be : {&c.backend(), static_cast<Backend*>(&cb)}) {
            Tensor w = be == &cb ? wg : wc;
            be->free(w.data);
            be->free(w.scales);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tpinfer::test

// Fused projections (format version 2): one matmul over the rows [q | k | v] (or [gate | up]) of a
// rank equals the separate matmuls over q, k and v, column range by column range, for f32, bf16
// and int8 weights (per-block and per-channel scales concatenated the same way), with biases,
// at 1 token (the decode views) and several (the copies); and the two ops that split the fused
// output, copy_cols and silu_mul_fused, against their plain definitions.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "../lib/random_data.h"
#include "backend/backend.h"

using namespace tpinfer;

namespace {

struct HostWeight {
  int64_t rows = 0, cols = 0;
  std::vector<float> f;       // float weights
  std::vector<int8_t> q;      // int8 weights
  std::vector<float> scales;  // [rows, n_groups]
};

HostWeight random_weight(int64_t rows, int64_t cols, int64_t group, uint64_t seed) {
  HostWeight w;
  w.rows = rows;
  w.cols = cols;
  w.f = randn(static_cast<size_t>(rows * cols), seed, 0.1f);
  std::mt19937_64 rng(seed + 7);
  std::uniform_int_distribution<int> qd(-127, 127);
  std::uniform_real_distribution<float> sd(0.001f, 0.01f);
  w.q.resize(static_cast<size_t>(rows * cols));
  for (int8_t& v : w.q) v = static_cast<int8_t>(qd(rng));
  const int64_t ng = (cols + group - 1) / group;
  w.scales.resize(static_cast<size_t>(rows * ng));
  for (float& s : w.scales) s = sd(rng);
  return w;
}

// Rows of the parts one after the other (what the converter writes for one rank).
HostWeight concat_rows(const std::vector<const HostWeight*>& parts) {
  HostWeight w;
  w.cols = parts[0]->cols;
  for (const HostWeight* p : parts) {
    w.rows += p->rows;
    w.f.insert(w.f.end(), p->f.begin(), p->f.end());
    w.q.insert(w.q.end(), p->q.begin(), p->q.end());
    w.scales.insert(w.scales.end(), p->scales.begin(), p->scales.end());
  }
  return w;
}

class Device {
 public:
  explicit Device(const BackendOptions& o) : be(make_backend(BackendKind::cpu, o)) {}
  ~Device() {
    for (void* p : owned_) be->free(p);
  }
  Tensor alloc(DType dt, int64_t rows, int64_t cols) {
    Tensor t{nullptr, dt, rows, cols};
    t.data = be->alloc(t.bytes());
    owned_.push_back(t.data);
    return t;
  }
  Tensor upload(const HostWeight& h, DType dt, int64_t group) {
    if (dt == DType::i8) {
      Tensor t = alloc(DType::i8, h.rows, h.cols);
      t.group = group;
      t.scales = alloc(DType::f32, h.rows, t.n_groups()).data;
      be->upload_int8_weight(t, h.q.data(), h.scales.data());
      return t;
    }
    Tensor t = alloc(be->weight_dtype(), h.rows, h.cols);
    be->upload_weight(t, h.f.data(), DType::f32);
    return t;
  }
  Tensor act(const std::vector<float>& v, int64_t rows, int64_t cols) {
    Tensor t = alloc(DType::f32, rows, cols);
    be->copy_to_device(t.data, v.data(), v.size() * sizeof(float));
    return t;
  }
  std::vector<float> read(Tensor t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    be->copy_to_host(v.data(), t.data, v.size() * sizeof(float));
    return v;
  }
  std::unique_ptr<Backend> be;

 private:
  std::vector<void*> owned_;
};

}  // namespace

TEST_CASE("a fused projection equals the separate projections, column range by range",
          "[ops][fused]") {
  struct Case {
    const char* name;
    DType stored;
    bool int8;
    int64_t group;  // int8 only; == cols is per channel
  };
  const int64_t H = 96;
  for (const Case& c : {Case{"f32", DType::f32, false, 0}, Case{"bf16", DType::bf16, false, 0},
                        Case{"int8 group 32", DType::bf16, true, 32},
                        Case{"int8 per channel", DType::f32, true, H}}) {
    for (int T : {1, 3, 17}) {
      CAPTURE(c.name, T);
      BackendOptions o;
      o.n_threads = 2;
      o.stored_weight_dtype = c.stored;
      o.int8_weights = c.int8;
      Device d(o);
      const DType wdt = c.int8 ? DType::i8 : d.be->weight_dtype();
      const int64_t group = c.int8 ? c.group : 0;
      // q/k/v of one rank: 4 heads and 2 kv heads of 16, and gate/up of 40 columns.
      const HostWeight wq = random_weight(64, H, c.int8 ? c.group : 1, 1);
      const HostWeight wk = random_weight(32, H, c.int8 ? c.group : 1, 2);
      const HostWeight wv = random_weight(32, H, c.int8 ? c.group : 1, 3);
      const HostWeight wg = random_weight(40, H, c.int8 ? c.group : 1, 4);
      const HostWeight wu = random_weight(40, H, c.int8 ? c.group : 1, 5);
      const std::vector<float> bq = randn(64, 6), bk = randn(32, 7), bv = randn(32, 8);
      const std::vector<float> x = randn(static_cast<size_t>(T * H), 9);
      Tensor in = d.act(x, T, H);

      // Separate: q, k, v (+ bias), gate, up; then silu(gate) * up.
      std::vector<std::vector<float>> sep;
      for (const auto& [w, b] : {std::pair{&wq, &bq}, std::pair{&wk, &bk}, std::pair{&wv, &bv}}) {
        Tensor out = d.alloc(DType::f32, T, w->rows);
        d.be->matmul(out, in, d.upload(*w, wdt, group));
        d.be->add_bias(out, d.act(*b, 1, w->rows));
        sep.push_back(d.read(out));
      }
      Tensor g = d.alloc(DType::f32, T, 40), u = d.alloc(DType::f32, T, 40);
      d.be->matmul(g, in, d.upload(wg, wdt, group));
      d.be->matmul(u, in, d.upload(wu, wdt, group));
      Tensor act_sep = d.alloc(DType::f32, T, 40);
      d.be->silu_mul(act_sep, g, u);

      // Fused: one matmul over [q | k | v], one bias, then copy_cols; one over [gate | up].
      std::vector<float> bqkv = bq;
      bqkv.insert(bqkv.end(), bk.begin(), bk.end());
      bqkv.insert(bqkv.end(), bv.begin(), bv.end());
      Tensor qkv = d.alloc(DType::f32, T, 128);
      d.be->matmul(qkv, in, d.upload(concat_rows({&wq, &wk, &wv}), wdt, group));
      d.be->add_bias(qkv, d.act(bqkv, 1, 128));
      const int64_t first[3] = {0, 64, 96}, width[3] = {64, 32, 32};
      for (int p = 0; p < 3; ++p) {
        CAPTURE(p);
        Tensor part = d.alloc(DType::f32, T, width[p]);
        d.be->copy_cols(part, qkv, first[p]);
        CHECK(d.read(part) == sep[static_cast<size_t>(p)]);  // bit for bit
      }
      Tensor gate_up = d.alloc(DType::f32, T, 80);
      d.be->matmul(gate_up, in, d.upload(concat_rows({&wg, &wu}), wdt, group));
      Tensor gc = d.alloc(DType::f32, T, 40), uc = d.alloc(DType::f32, T, 40);
      d.be->copy_cols(gc, gate_up, 0);
      d.be->copy_cols(uc, gate_up, 40);
      CHECK(d.read(gc) == d.read(g));
      CHECK(d.read(uc) == d.read(u));
      Tensor act_fused = d.alloc(DType::f32, T, 40);
      d.be->silu_mul_fused(act_fused, gate_up);
      const std::vector<float> want = d.read(act_sep), got = d.read(act_fused);
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        INFO("index " << i);
        REQUIRE(std::abs(got[i] - want[i]) <= 1e-6f * (1.0f + std::abs(want[i])));
      }
    }
  }
}

TEST_CASE("silu_mul_fused and copy_cols against their definitions", "[ops][fused]") {
  Device d(BackendOptions{});
  const int T = 5, I = 37;
  const std::vector<float> gu = randn(static_cast<size_t>(T * 2 * I), 21, 3.0f);
  Tensor t = d.act(gu, T, 2 * I);
  Tensor out = d.alloc(DType::f32, T, I);
  d.be->silu_mul_fused(out, t);
  const std::vector<float> got = d.read(out);
  for (int r = 0; r < T; ++r) {
    for (int i = 0; i < I; ++i) {
      const double g = gu[static_cast<size_t>(r * 2 * I + i)];
      const double u = gu[static_cast<size_t>(r * 2 * I + I + i)];
      const double want = g / (1.0 + std::exp(-g)) * u;
      INFO("row " << r << " col " << i);
      REQUIRE(std::abs(got[static_cast<size_t>(r * I + i)] - want) <= 1e-5 * (1 + std::abs(want)));
    }
  }
  Tensor cols = d.alloc(DType::f32, T, 10);
  d.be->copy_cols(cols, t, 60);
  const std::vector<float> c = d.read(cols);
  for (int r = 0; r < T; ++r) {
    for (int i = 0; i < 10; ++i) {
      REQUIRE(c[static_cast<size_t>(r * 10 + i)] == gu[static_cast<size_t>(r * 2 * I + 60 + i)]);
    }
  }
  // Bad shapes: one line naming the op and the shapes.
  CHECK_THROWS_WITH(d.be->copy_cols(cols, t, 70),
                    "cpu copy_cols: columns [70, 80) of [5, 74] into [5, 10]");
  CHECK_THROWS_WITH(d.be->silu_mul_fused(cols, t),
                    "cpu silu_mul_fused: out [5, 10], gate_up [5, 74]");
}

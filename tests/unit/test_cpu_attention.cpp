// The tiled CPU attention (kernels/cpu attention) against a plain double-precision causal GQA
// softmax, on shapes past its blocks: prompts over several 64-key blocks, prefill in chunks,
// GQA groups of 1, 4 and 8, a sliding window across block boundaries, and its batch invariance
// (a token gets the same bits alone, in a prefill chunk, or next to other sequences).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace {

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// One sequence's keys and values in slot `slot` of a [n_slots, max_seq, kv_dim] cache, and its
// queries for every position.
struct Case {
  int n_slots, max_seq, nh, nkv, hd, window;
  std::vector<float> kc, vc, q;
  Case(int n_slots_, int max_seq_, int nh_, int nkv_, int hd_, int window_, uint64_t seed)
      : n_slots(n_slots_), max_seq(max_seq_), nh(nh_), nkv(nkv_), hd(hd_), window(window_) {
    kc = randn(size_t(n_slots) * max_seq * nkv * hd, seed);
    vc = randn(kc.size(), seed + 1);
    // Scaled queries: scores of a few units, so the softmax is neither flat nor one-hot.
    q = randn(size_t(n_slots) * max_seq * nh * hd, seed + 2, 2.0f);
  }
  const float* q_at(int slot, int p) const {
    return q.data() + (size_t(slot) * max_seq + p) * nh * hd;
  }
  float scale() const { return 1.0f / std::sqrt(float(hd)); }

  // Attention of the listed (slot, position) tokens, in that order, as one call.
  std::vector<float> run(const std::vector<int32_t>& slots, const std::vector<int32_t>& pos) const {
    const int T = static_cast<int>(slots.size());
    std::vector<float> qb(size_t(T) * nh * hd), out(qb.size(), NAN);
    for (int t = 0; t < T; ++t)
      std::memcpy(qb.data() + size_t(t) * nh * hd, q_at(slots[t], pos[t]), sizeof(float) * nh * hd);
    tpinfer::cpu::attention(out.data(), qb.data(), kc.data(), vc.data(), slots.data(), pos.data(),
                            T, nh, nkv, hd, max_seq, window, scale());
    return out;
  }

  // The reference for one token (double precision), all heads.
  std::vector<double> reference(int slot, int p) const {
    const int kv_dim = nkv * hd, group = nh / nkv;
    std::vector<double> ref(size_t(nh) * hd);
    const int start = window > 0 ? std::max(0, p - window + 1) : 0;
    for (int h = 0; h < nh; ++h) {
      const int g = h / group;
      const float* qh = q_at(slot, p) + h * hd;
      std::vector<double> s;
      double m = -1e300;
      for (int j = start; j <= p; ++j) {
        const float* kr = kc.data() + (size_t(slot) * max_seq + j) * kv_dim + g * hd;
        double d = 0;
        for (int i = 0; i < hd; ++i) d += double(qh[i]) * kr[i];
        s.push_back(d * scale());
        m = std::max(m, s.back());
      }
      double z = 0;
      for (double& x : s) z += (x = std::exp(x - m));
      for (int i = 0; i < hd; ++i) {
        double acc = 0;
        for (int j = start; j <= p; ++j)
          acc += s[j - start] / z * vc[(size_t(slot) * max_seq + j) * kv_dim + g * hd + i];
        ref[size_t(h) * hd + i] = acc;
      }
    }
    return ref;
  }

  void require_matches_reference(const std::vector<float>& out, const std::vector<int32_t>& slots,
                                 const std::vector<int32_t>& pos) const {
    for (size_t t = 0; t < slots.size(); ++t) {
      const auto ref = reference(slots[t], pos[t]);
      for (int i = 0; i < nh * hd; ++i) {
        const float got = out[t * nh * hd + i];
        INFO("token " << t << " (slot " << slots[t] << ", position " << pos[t] << "), element " << i
                      << ": got " << got << ", reference " << ref[i]);
        REQUIRE(std::abs(got - ref[i]) <= 2e-5 + 1e-4 * std::abs(ref[i]));
      }
    }
  }
};

std::vector<int32_t> range(int from, int to) {
  std::vector<int32_t> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}

bool same_bits(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, sizeof(float) * n) == 0;
}

}  // namespace

TEST_CASE("cpu attention: long prompts, GQA groups and windows match the reference",
          "[ops][attention]") {
  struct Shape {
    int nh, nkv, hd, window, len;
  };
  // len over several 64-key blocks and not a multiple of them; windows across block boundaries.
  const Shape shapes[] = {{4, 4, 16, 0, 150}, {8, 2, 8, 0, 200},   {32, 4, 64, 0, 140},
                          {8, 1, 32, 0, 70},  {8, 2, 8, 50, 200},  {32, 4, 64, 64, 160},
                          {6, 3, 12, 1, 90},  {2, 1, 64, 100, 130}};
  for (const Shape& sh : shapes) {
    INFO("heads " << sh.nh << "/" << sh.nkv << ", head_dim " << sh.hd << ", window " << sh.window
                  << ", prompt " << sh.len);
    Case c(2, sh.len + 8, sh.nh, sh.nkv, sh.hd, sh.window, 100 + sh.len + sh.nh);
    const std::vector<int32_t> pos = range(0, sh.len), slots(sh.len, 1);
    c.require_matches_reference(c.run(slots, pos), slots, pos);
  }
}

TEST_CASE("cpu attention: prefill in chunks, decode and mixed batches give the same bits",
          "[ops][attention]") {
  for (int window : {0, 40}) {
    INFO("window " << window);
    Case c(3, 200, 16, 4, 32, window, 7);
    const int len = 180;
    // Whole prompt at once.
    const std::vector<int32_t> pos = range(0, len), slots(len, 2);
    const auto whole = c.run(slots, pos);
    c.require_matches_reference(whole, slots, pos);
    const size_t row = size_t(16) * 32;
    // In chunks of 70, 45, 65 (the cache already holds the earlier positions).
    int from = 0;
    for (int n : {70, 45, 65}) {
      const auto part = c.run(std::vector<int32_t>(n, 2), range(from, from + n));
      REQUIRE(same_bits(part.data(), whole.data() + from * row, n * row));
      from += n;
    }
    // Token by token (decode), a few positions.
    for (int p : {0, 1, 63, 64, 65, 127, 128, 179}) {
      const auto one = c.run({2}, {p});
      INFO("position " << p);
      REQUIRE(same_bits(one.data(), whole.data() + p * row, row));
    }
    // A batch mixing two sequences (slots 0 and 2) and decode tokens between prefill runs.
    const std::vector<int32_t> mslots = {0, 0, 0, 2, 2, 0, 2, 2, 2, 0};
    const std::vector<int32_t> mpos = {5, 6, 7, 100, 101, 150, 179, 64, 63, 0};
    const auto mixed = c.run(mslots, mpos);
    c.require_matches_reference(mixed, mslots, mpos);
    for (size_t t = 0; t < mslots.size(); ++t) {
      const auto one = c.run({mslots[t]}, {mpos[t]});
      INFO("batch token " << t);
      REQUIRE(same_bits(one.data(), mixed.data() + t * row, row));
    }
  }
}

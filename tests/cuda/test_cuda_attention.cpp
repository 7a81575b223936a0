// KV append + attention against the CPU backend: single-slot prefills (short ones take the
// flash-decoding kernel, long ones the tiled prefill kernel), chunked prefill on top of cached
// history, multi-slot decode batches with long contexts (several splits), a batch whose
// prefill tiles straddle two slots, GQA ratios 1..8, head_dim 8/64/96/128 and sliding windows.
#include <algorithm>
#include <cmath>
#include <map>

#include "cuda_test_util.h"

namespace tpinfer::test {
namespace {

struct Config {
  int n_heads, n_kv_heads, head_dim, window;
};

KvLayer make_cache(Arena& a, DType dtype, int n_slots, int max_seq, int n_kv, int hd) {
  KvLayer c;
  const int64_t rows = int64_t{n_slots} * max_seq;
  c.k = a.empty(dtype, rows, int64_t{n_kv} * hd).data;
  c.v = a.empty(dtype, rows, int64_t{n_kv} * hd).data;
  c.dtype = dtype;
  c.n_slots = n_slots;
  c.max_seq = max_seq;
  c.n_kv_heads = n_kv;
  c.head_dim = hd;
  return c;
}

// Appends rows (slots[i], positions[i]) with the given k/v values on one backend.
void append(Arena& a, const KvLayer& c, const std::vector<int32_t>& slots,
            const std::vector<int32_t>& positions, const std::vector<float>& k,
            const std::vector<float>& v) {
  const int T = static_cast<int>(slots.size());
  const int64_t width = int64_t{c.n_kv_heads} * c.head_dim;
  Tensor kt = a.act(T, width, k), vt = a.act(T, width, v);
  BatchView b{T, a.ints(positions), a.ints(slots),
              *std::max_element(positions.begin(), positions.end())};
  a.backend().kv_append(c, kt, vt, b);
}

// history[s] = positions [0, history[s]) of slot s are filled before the batch; then the batch
// (slots, positions) is appended and attended.
void run_case(const Config& cfg, int n_slots, int max_seq, const std::map<int, int>& history,
              const std::vector<int32_t>& slots, const std::vector<int32_t>& positions,
              uint32_t seed) {
  const int T = static_cast<int>(slots.size());
  const int hd = cfg.head_dim;
  const int64_t kv_width = int64_t{cfg.n_kv_heads} * hd;
  const int64_t q_width = int64_t{cfg.n_heads} * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Arena c(cpu_backend()), g(cuda_backend());
  KvLayer cc = make_cache(c, DType::f32, n_slots, max_seq, cfg.n_kv_heads, hd);
  KvLayer cg = make_cache(g, DType::bf16, n_slots, max_seq, cfg.n_kv_heads, hd);
  uint32_t s = seed;
  for (const auto& [slot, len] : history) {
    if (len == 0) continue;
    std::vector<int32_t> hs(len, slot), hp(len);
    for (int i = 0; i < len; ++i) hp[i] = i;
    // Keys spread the scores (|q.k| * scale up to ~3) so the softmax is not uniform.
    const auto k = random_bf16(static_cast<size_t>(len) * kv_width, ++s, -2.0f, 2.0f);
    const auto v = random_bf16(static_cast<size_t>(len) * kv_width, ++s);
    append(c, cc, hs, hp, k, v);
    append(g, cg, hs, hp, k, v);
  }
  const auto k = random_bf16(static_cast<size_t>(T) * kv_width, ++s, -2.0f, 2.0f);
  const auto v = random_bf16(static_cast<size_t>(T) * kv_width, ++s);
  const auto q = random_bf16(static_cast<size_t>(T) * q_width, ++s, -2.0f, 2.0f);
  append(c, cc, slots, positions, k, v);
  append(g, cg, slots, positions, k, v);
  const int max_pos = *std::max_element(positions.begin(), positions.end());
  BatchView bc{T, c.ints(positions), c.ints(slots), max_pos};
  BatchView bg{T, g.ints(positions), g.ints(slots), max_pos};
  Tensor qc = c.act(T, q_width, q), qg = g.act(T, q_width, q);
  Tensor oc = c.empty(DType::f32, T, q_width), og = g.empty(DType::bf16, T, q_width);
  c.backend().attention(oc, qc, cc, bc, cfg.n_heads, cfg.window, scale);
  g.backend().attention(og, qg, cg, bg, cfg.n_heads, cfg.window, scale);
  INFO("kernel " << cuda_backend().attention_kernel_for(T, cg, cfg.n_heads));
  // Outputs are convex combinations of V in [-1, 1]; the prefill kernel rounds P to bf16.
  REQUIRE_CLOSE("attention", g.read(og), c.read(oc), 1.5e-2, 2e-2);
}

const Config kConfigs[] = {
    {8, 2, 64, 0},      // GQA 4, hd 64
    {32, 8, 128, 0},    // Qwen3-4B / Mistral-7B heads
    {4, 4, 128, 0},     // MHA
    {8, 4, 8, 0},       // stories260K: hd 8, one lane per key
    {6, 2, 96, 0},      // hd 96: lanes per key rounded up to 16
    {8, 1, 64, 0},      // MQA-like GQA 8
    {8, 2, 64, 48},     // sliding window shorter than the prompt
    {16, 2, 128, 100},  // sliding window, GQA 8
};

TEST_CASE("cuda attention: single-slot prefill, short and long, with and without history",
          "[cuda][attention]") {
  for (const Config& cfg : kConfigs) {
    for (int T : {1, 12, 20, 77, 300}) {
      for (int p0 : {0, 150}) {
        CAPTURE(cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.window, T, p0);
        std::vector<int32_t> slots(T, 2), pos(T);
        for (int i = 0; i < T; ++i) pos[i] = p0 + i;
        run_case(cfg, 4, 512, {{2, p0}}, slots, pos, 100 + T + p0);
      }
    }
  }
}

TEST_CASE("cuda attention: multi-slot decode batches with long contexts", "[cuda][attention]") {
  for (const Config& cfg : kConfigs) {
    CAPTURE(cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.window);
    // Slot 2 is left empty; the tokens sit at very different depths (1..2 splits .. 32 splits).
    run_case(cfg, 4, 2100, {{0, 5}, {1, 2047}, {3, 63}}, {0, 1, 3}, {5, 2047, 63}, 7);
    run_case(cfg, 4, 2100, {{1, 1000}}, {1}, {1000}, 8);  // batch 1, many splits
    run_case(cfg, 4, 2100, {{3, 0}}, {3}, {0}, 9);        // first token of a sequence
  }
}

TEST_CASE("cuda attention: prefill tiles that straddle two slots", "[cuda][attention]") {
  for (const Config& cfg : kConfigs) {
    CAPTURE(cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.window);
    // 90 tokens: 40 of slot 1 (positions 10..49 over 10 cached) then 50 of slot 0 (0..49).
    std::vector<int32_t> slots, pos;
    for (int i = 0; i < 40; ++i) {
      slots.push_back(1);
      pos.push_back(10 + i);
    }
    for (int i = 0; i < 50; ++i) {
      slots.push_back(0);
      pos.push_back(i);
    }
    run_case(cfg, 2, 128, {{1, 10}}, slots, pos, 11);
  }
}

}  // namespace
}  // namespace tpinfer::test

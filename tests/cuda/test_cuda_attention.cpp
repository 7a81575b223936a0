// KV append + attention over the paged KV cache against the CPU backend (its twin), through
// shuffled block tables: single-sequence prefills (short ones take the flash-decoding kernel,
// long ones the tiled prefill kernel), chunked prefill on top of cached history, decode batches
// of sequences of different lengths (several splits), a batch whose prefill tiles straddle two
// sequences, GQA ratios 1..8, head_dim 8/64/96/128, sliding windows with the blocks before the
// window dropped (-1), block sizes 1 to 128.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "cuda_test_util.h"

namespace tpinfer::test {
namespace {

struct Config {
  int n_heads, n_kv_heads, head_dim, window;
};

// A paged pool of n_rows sequences of up to max_seq positions: every row's blocks sit at
// shuffled, non-contiguous pool blocks (a few spare ones in between), the same table on both
// backends. Entries of blocks that no token of the batch reads (wholly before its window) are
// set to -1 by drop_before_window.
struct Paged {
  int block_size, stride, n_blocks, n_rows, max_seq;
  std::vector<int32_t> table;
  Paged(int n_rows_, int max_seq_, int block_size_, uint32_t seed)
      : block_size(block_size_), n_rows(n_rows_), max_seq(max_seq_) {
    stride = (max_seq + block_size - 1) / block_size;
    n_blocks = n_rows * stride + 3;
    std::vector<int32_t> perm(n_blocks);
    for (int i = 0; i < n_blocks; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
    table.assign(perm.begin(), perm.begin() + int64_t{n_rows} * stride);
  }
  // -1 for every block of row r wholly before position lo (never read by a token at >= lo).
  void drop_before(int r, int lo) {
    for (int b = 0; (b + 1) * block_size <= lo; ++b) table[int64_t{r} * stride + b] = -1;
  }
  KvLayer make_cache(Arena& a, DType dtype, int n_kv, int hd) const {
    KvLayer c;
    const int64_t cells = int64_t{n_blocks} * block_size;
    c.k = a.empty(dtype, cells, int64_t{n_kv} * hd).data;
    c.v = a.empty(dtype, cells, int64_t{n_kv} * hd).data;
    c.dtype = dtype;
    c.n_blocks = n_blocks;
    c.block_size = block_size;
    c.n_kv_heads = n_kv;
    c.head_dim = hd;
    c.max_seq = max_seq;
    c.max_rows = n_rows;
    return c;
  }
  BatchView view(Arena& a, const std::vector<int32_t>& rows,
                 const std::vector<int32_t>& positions) const {
    const int T = static_cast<int>(rows.size());
    return BatchView{T,
                     a.ints(positions),
                     a.ints(rows),
                     a.ints(table),
                     stride,
                     *std::max_element(positions.begin(), positions.end())};
  }
};

// Appends (rows[i], positions[i]) with the given k/v values on one backend.
void append(Arena& a, const Paged& p, const KvLayer& c, const std::vector<int32_t>& rows,
            const std::vector<int32_t>& positions, const std::vector<float>& k,
            const std::vector<float>& v) {
  const int T = static_cast<int>(rows.size());
  const int64_t width = int64_t{c.n_kv_heads} * c.head_dim;
  Tensor kt = a.act(T, width, k), vt = a.act(T, width, v);
  a.backend().kv_append(c, kt, vt, p.view(a, rows, positions));
}

// history[r] = positions [0, history[r]) of row r are filled before the batch; then the batch
// (rows, positions) is appended and attended, through a shuffled block table of block_size
// (with the blocks before every token's window dropped to -1 when the config has a window).
void run_case(const Config& cfg, int n_rows, int max_seq, const std::map<int, int>& history,
              const std::vector<int32_t>& rows, const std::vector<int32_t>& positions,
              uint32_t seed, int block_size = 16) {
  const int T = static_cast<int>(rows.size());
  const int hd = cfg.head_dim;
  const int64_t kv_width = int64_t{cfg.n_kv_heads} * hd;
  const int64_t q_width = int64_t{cfg.n_heads} * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Arena c(cpu_backend()), g(cuda_backend());
  Paged paged(n_rows, max_seq, block_size, seed);
  KvLayer cc = paged.make_cache(c, DType::f32, cfg.n_kv_heads, hd);
  KvLayer cg = paged.make_cache(g, DType::bf16, cfg.n_kv_heads, hd);
  uint32_t s = seed;
  for (const auto& [row, len] : history) {
    if (len == 0) continue;
    std::vector<int32_t> hs(len, row), hp(len);
    for (int i = 0; i < len; ++i) hp[i] = i;
    // Keys spread the scores (|q.k| * scale up to ~3) so the softmax is not uniform.
    const auto k = random_bf16(static_cast<size_t>(len) * kv_width, ++s, -2.0f, 2.0f);
    const auto v = random_bf16(static_cast<size_t>(len) * kv_width, ++s);
    append(c, paged, cc, hs, hp, k, v);
    append(g, paged, cg, hs, hp, k, v);
  }
  const auto k = random_bf16(static_cast<size_t>(T) * kv_width, ++s, -2.0f, 2.0f);
  const auto v = random_bf16(static_cast<size_t>(T) * kv_width, ++s);
  const auto q = random_bf16(static_cast<size_t>(T) * q_width, ++s, -2.0f, 2.0f);
  append(c, paged, cc, rows, positions, k, v);
  append(g, paged, cg, rows, positions, k, v);
  if (cfg.window > 0) {  // the kernels must not read what no token of the batch attends to
    std::map<int, int> lo;
    for (int t = 0; t < T; ++t) {
      const int l = std::max(0, positions[t] - cfg.window + 1);
      lo[rows[t]] = lo.count(rows[t]) ? std::min(lo[rows[t]], l) : l;
    }
    for (const auto& [row, l] : lo) paged.drop_before(row, l);
  }
  const BatchView bc = paged.view(c, rows, positions), bg = paged.view(g, rows, positions);
  Tensor qc = c.act(T, q_width, q), qg = g.act(T, q_width, q);
  Tensor oc = c.empty(DType::f32, T, q_width), og = g.empty(DType::bf16, T, q_width);
  c.backend().attention(oc, qc, cc, bc, cfg.n_heads, cfg.window, scale);
  g.backend().attention(og, qg, cg, bg, cfg.n_heads, cfg.window, scale);
  INFO("kernel " << cuda_backend().attention_kernel_for(T, cg, cfg.n_heads) << ", block size "
                 << block_size);
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

TEST_CASE("cuda attention: block sizes 1 to 128, prefill and decode", "[cuda][attention]") {
  const Config cfgs[] = {{8, 2, 64, 0}, {16, 2, 128, 70}};
  for (const Config& cfg : cfgs) {
    for (int bs : {1, 8, 16, 32, 128}) {
      CAPTURE(cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.window, bs);
      std::vector<int32_t> rows(200, 1), pos(200);
      for (int i = 0; i < 200; ++i) pos[i] = 37 + i;
      run_case(cfg, 3, 300, {{1, 37}}, rows, pos, 20 + bs, bs);                    // prefill
      run_case(cfg, 3, 300, {{0, 250}, {2, 17}}, {0, 2}, {250, 17}, 30 + bs, bs);  // decode
    }
  }
}

}  // namespace
}  // namespace tpinfer::test

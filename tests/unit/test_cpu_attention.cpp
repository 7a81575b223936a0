// The tiled CPU attention and kv_append (kernels/cpu) over the paged KV cache against a plain
// double-precision causal GQA softmax over contiguous K/V: random (shuffled, non-contiguous)
// block tables, prompts over several 64-key tiles, prefill in chunks, GQA groups of 1, 4 and 8,
// sliding windows across tile and block boundaries with dropped (-1) blocks, batched decode of
// sequences of different lengths, block sizes 1 to 128, decode at head dims 64 and 128 with GQA
// groups of 1 to 8, and batch invariance (a token gets the same bits alone, in a prefill chunk,
// next to other sequences, or with its blocks elsewhere).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "../lib/random_data.h"
#include "cpu/cpu_kernels.h"

namespace {

// Float storage between two unreadable page ranges (mmap + PROT_NONE), each at least `guard`
// bytes: a kernel that reads a block through a -1 entry (the block just before the pool) or
// past the pool's end faults at once, instead of reading garbage that the softmax mask hides.
class GuardedFloats {
 public:
  GuardedFloats(size_t n, size_t guard) : n_(n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    guard_ = (guard + page - 1) / page * page + page;
    body_ = (n * sizeof(float) + page - 1) / page * page;
    base_ = mmap(nullptr, 2 * guard_ + body_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
    REQUIRE(base_ != MAP_FAILED);
    char* b = static_cast<char*>(base_);
    REQUIRE(mprotect(b, guard_, PROT_NONE) == 0);
    REQUIRE(mprotect(b + guard_ + body_, guard_, PROT_NONE) == 0);
    data_ = reinterpret_cast<float*>(b + guard_);
  }
  ~GuardedFloats() { munmap(base_, 2 * guard_ + body_); }
  GuardedFloats(const GuardedFloats&) = delete;
  GuardedFloats& operator=(const GuardedFloats&) = delete;
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return n_; }
  void fill(size_t from, size_t to, float x) { std::fill(data_ + from, data_ + to, x); }

 private:
  size_t n_, guard_ = 0, body_ = 0;
  void* base_ = nullptr;
  float* data_ = nullptr;
};

// Keys, values and queries of n_rows sequences of up to max_seq positions, kept logically
// ([row, position, kv_dim]) for the reference and scattered into a paged pool through a block
// table that places every row's blocks at shuffled, non-contiguous pool blocks (spare blocks in
// between hold garbage). Entries of blocks below `first_block[row]` can be set to -1 (a sliding
// window's dropped blocks): the kernel must never read them.
struct Case {
  int n_rows, max_seq, nh, nkv, hd, window, block_size, stride, n_blocks;
  std::vector<float> kl, vl,
      q;  // logical K, V [n_rows, max_seq, kv_dim]; q [n_rows, max_seq, nh*hd]
  std::unique_ptr<GuardedFloats> kc, vc;  // the pool [n_blocks, block_size, kv_dim]
  std::vector<int32_t> table;             // [n_rows, stride]
  Case(int n_rows_, int max_seq_, int nh_, int nkv_, int hd_, int window_, uint64_t seed,
       int block_size_ = 16)
      : n_rows(n_rows_),
        max_seq(max_seq_),
        nh(nh_),
        nkv(nkv_),
        hd(hd_),
        window(window_),
        block_size(block_size_) {
    const size_t kv_dim = size_t(nkv) * hd;
    kl = randn(size_t(n_rows) * max_seq * kv_dim, seed);
    vl = randn(kl.size(), seed + 1);
    // Scaled queries: scores of a few units, so the softmax is neither flat nor one-hot.
    q = randn(size_t(n_rows) * max_seq * nh * hd, seed + 2, 2.0f);
    stride = (max_seq + block_size - 1) / block_size;
    n_blocks = n_rows * stride + 5;  // spare blocks that no row uses
    std::vector<int32_t> perm(n_blocks);
    for (int i = 0; i < n_blocks; ++i) perm[i] = i;
    std::mt19937_64 rng(seed + 3);
    std::shuffle(perm.begin(), perm.end(), rng);
    table.assign(perm.begin(), perm.begin() + size_t(n_rows) * stride);
    // Garbage (huge values) everywhere in the pool, then every row's positions in place.
    const size_t pool = size_t(n_blocks) * block_size * kv_dim;
    kc = std::make_unique<GuardedFloats>(pool, size_t(block_size) * kv_dim * sizeof(float));
    vc = std::make_unique<GuardedFloats>(pool, size_t(block_size) * kv_dim * sizeof(float));
    kc->fill(0, pool, 1e30f);
    vc->fill(0, pool, -1e30f);
    for (int r = 0; r < n_rows; ++r)
      for (int p = 0; p < max_seq; ++p) {
        const size_t at = cell(r, p) * kv_dim, from = (size_t(r) * max_seq + p) * kv_dim;
        std::memcpy(kc->data() + at, kl.data() + from, sizeof(float) * kv_dim);
        std::memcpy(vc->data() + at, vl.data() + from, sizeof(float) * kv_dim);
      }
  }
  // The pool row (block * block_size + offset) of (row, position).
  size_t cell(int r, int p) const {
    return size_t(table[size_t(r) * stride + p / block_size]) * block_size + p % block_size;
  }
  // Marks row r's blocks wholly before position `lo` as dropped (-1, the pool's guard page if
  // read); their pool blocks are filled with NaN, as a released block would hold anything.
  void drop_before(int r, int lo) {
    const size_t kv_dim = size_t(nkv) * hd, block = size_t(block_size) * kv_dim;
    for (int b = 0; (b + 1) * block_size <= lo; ++b) {
      int32_t& e = table[size_t(r) * stride + b];
      if (e < 0) continue;
      kc->fill(e * block, (e + 1) * block, NAN);
      vc->fill(e * block, (e + 1) * block, NAN);
      e = -1;
    }
  }
  const float* q_at(int r, int p) const { return q.data() + (size_t(r) * max_seq + p) * nh * hd; }
  float scale() const { return 1.0f / std::sqrt(float(hd)); }

  // Attention of the listed (row, position) tokens, in that order, as one call.
  std::vector<float> run(const std::vector<int32_t>& rows, const std::vector<int32_t>& pos) const {
    const int T = static_cast<int>(rows.size());
    std::vector<float> qb(size_t(T) * nh * hd), out(qb.size(), NAN);
    for (int t = 0; t < T; ++t)
      std::memcpy(qb.data() + size_t(t) * nh * hd, q_at(rows[t], pos[t]), sizeof(float) * nh * hd);
    tpinfer::cpu::attention(out.data(), qb.data(), kc->data(), vc->data(), rows.data(), pos.data(),
                            table.data(), stride, T, nh, nkv, hd, block_size, window, scale());
    return out;
  }

  // The reference for one token (double precision, the logical contiguous K and V), all heads.
  std::vector<double> reference(int r, int p) const {
    const int kv_dim = nkv * hd, group = nh / nkv;
    std::vector<double> ref(size_t(nh) * hd);
    const int start = window > 0 ? std::max(0, p - window + 1) : 0;
    for (int h = 0; h < nh; ++h) {
      const int g = h / group;
      const float* qh = q_at(r, p) + h * hd;
      std::vector<double> s;
      double m = -1e300;
      for (int j = start; j <= p; ++j) {
        const float* kr = kl.data() + (size_t(r) * max_seq + j) * kv_dim + g * hd;
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
          acc += s[j - start] / z * vl[(size_t(r) * max_seq + j) * kv_dim + g * hd + i];
        ref[size_t(h) * hd + i] = acc;
      }
    }
    return ref;
  }

  void require_matches_reference(const std::vector<float>& out, const std::vector<int32_t>& rows,
                                 const std::vector<int32_t>& pos) const {
    for (size_t t = 0; t < rows.size(); ++t) {
      const auto ref = reference(rows[t], pos[t]);
      for (int i = 0; i < nh * hd; ++i) {
        const float got = out[t * nh * hd + i];
        INFO("token " << t << " (row " << rows[t] << ", position " << pos[t] << "), element " << i
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

TEST_CASE(
    "cpu attention: any block size and placement gives the same bits as one block per "
    "sequence",
    "[ops][attention][paged]") {
  // The same logical sequences with block sizes 1 to 128, shuffled: the reference within
  // tolerance, and bit-identical to a single block per sequence (block_size = max_seq, the
  // contiguous cache), for a prefill, chunks and a decode batch.
  for (int window : {0, 37}) {
    const int len = 150, nh = 8, nkv = 2, hd = 64;
    Case contiguous(2, 160, nh, nkv, hd, window, 900, 256);
    const std::vector<int32_t> pos = range(0, len), rows(len, 1);
    const auto whole = contiguous.run(rows, pos);
    contiguous.require_matches_reference(whole, rows, pos);
    const size_t row = size_t(nh) * hd;
    for (int bs : {1, 2, 4, 8, 16, 32, 64, 128}) {
      INFO("block size " << bs << ", window " << window);
      Case c(2, 160, nh, nkv, hd, window, 900, bs);  // the same seed: the same logical data
      REQUIRE(same_bits(c.run(rows, pos).data(), whole.data(), whole.size()));
      const auto chunk = c.run(std::vector<int32_t>(50, 1), range(70, 120));
      REQUIRE(same_bits(chunk.data(), whole.data() + 70 * row, 50 * row));
      const std::vector<int32_t> drows = {0, 1, 0, 1}, dpos = {3, 149, 130, 64};
      const auto dec = c.run(drows, dpos);
      c.require_matches_reference(dec, drows, dpos);
      const auto dec_contiguous = contiguous.run(drows, dpos);
      REQUIRE(same_bits(dec.data(), dec_contiguous.data(), dec.size()));
    }
  }
}

TEST_CASE(
    "cpu attention: decode at head dims 64 and 128 (a GQA group's rows together) gives the "
    "prefill's bits",
    "[ops][attention][paged]") {
  // Decode tiles of head dim 64 and 128 run the rows of a GQA group together, up to 4 (64) or 2
  // (128) at a time; groups of 1, 3, 7 (4 + 3), 2 and 5 (2 + 2 + 1) take every split. Blocks of 16
  // go through the register transpose of the keys, blocks of 8 through the plain loop; window 37
  // starts mid-block. A token alone, or in a decode batch, gets the bits of its row of the prefill.
  struct Shape {
    int nh, nkv, hd;
  };
  const Shape shapes[] = {{12, 4, 64}, {4, 4, 64}, {14, 2, 64}, {20, 4, 128}, {8, 4, 128}};
  for (const Shape& sh : shapes) {
    for (int window : {0, 37}) {
      const int len = 150;
      const std::vector<int32_t> pos = range(0, len), rows(len, 1);
      const size_t row = size_t(sh.nh) * sh.hd;
      std::vector<float> whole;  // the prefill, the same bits at either block size
      for (int bs : {16, 8}) {
        INFO("heads " << sh.nh << "/" << sh.nkv << ", head_dim " << sh.hd << ", block size " << bs
                      << ", window " << window);
        Case c(2, 160, sh.nh, sh.nkv, sh.hd, window, 1000 + sh.nh + sh.hd, bs);
        const auto prefill = c.run(rows, pos);
        if (whole.empty()) {
          c.require_matches_reference(prefill, rows, pos);
          whole = prefill;
        }
        REQUIRE(same_bits(prefill.data(), whole.data(), whole.size()));
        for (int p : {0, 15, 16, 63, 64, 100, 149}) {
          INFO("position " << p);
          REQUIRE(same_bits(c.run({1}, {p}).data(), whole.data() + p * row, row));
        }
        const std::vector<int32_t> drows = {1, 0, 1}, dpos = {149, 80, 47};
        const auto dec = c.run(drows, dpos);
        c.require_matches_reference(dec, drows, dpos);
        REQUIRE(same_bits(dec.data(), whole.data() + 149 * row, row));
        REQUIRE(same_bits(dec.data() + 2 * row, whole.data() + 47 * row, row));
      }
    }
  }
}

TEST_CASE("cpu attention: GQA 1/4/8 over random block tables, sliding window with dropped blocks",
          "[ops][attention][paged]") {
  struct Shape {
    int nh, nkv, hd, window, block_size;
  };
  const Shape shapes[] = {{4, 4, 16, 0, 16},  {16, 4, 32, 0, 16},  {16, 2, 64, 0, 32},
                          {8, 8, 64, 48, 16}, {16, 4, 32, 40, 16}, {32, 4, 128, 70, 32},
                          {8, 1, 64, 16, 16}, {8, 1, 64, 17, 8}};
  for (const Shape& sh : shapes) {
    INFO("heads " << sh.nh << "/" << sh.nkv << ", head_dim " << sh.hd << ", window " << sh.window
                  << ", block size " << sh.block_size);
    Case c(4, 220, sh.nh, sh.nkv, sh.hd, sh.window, 300 + sh.nh + sh.window, sh.block_size);
    // Decode of four sequences of different lengths in one batch.
    const std::vector<int32_t> rows = {0, 1, 2, 3}, pos = {0, 63, 140, 219};
    const auto full = c.run(rows, pos);
    c.require_matches_reference(full, rows, pos);
    if (sh.window <= 0) continue;
    // Drop every block wholly before each token's window (NaN in the pool, -1 in the table):
    // the same bits, so nothing dropped was read.
    for (size_t t = 0; t < rows.size(); ++t)
      c.drop_before(rows[t], std::max(0, pos[t] - sh.window + 1));
    const auto dropped = c.run(rows, pos);
    REQUIRE(same_bits(dropped.data(), full.data(), full.size()));
    // A prefill chunk [180, 220) of row 3 after its blocks before 180 - window + 1 are dropped.
    Case p(4, 220, sh.nh, sh.nkv, sh.hd, sh.window, 300 + sh.nh + sh.window, sh.block_size);
    const std::vector<int32_t> crows(40, 3), cpos = range(180, 220);
    const auto before = p.run(crows, cpos);
    p.require_matches_reference(before, crows, cpos);
    p.drop_before(3, 180 - sh.window + 1);
    const auto after = p.run(crows, cpos);
    REQUIRE(same_bits(after.data(), before.data(), before.size()));
  }
}

TEST_CASE("cpu attention: chunked prefill over a paged cache attends to earlier chunks",
          "[ops][attention][paged]") {
  // Two sequences prefilled in interleaved chunks in one batch each step, then decoded together;
  // every token against the reference and against the whole-prompt run.
  Case c(3, 200, 16, 4, 64, 0, 77, 16);
  const size_t row = size_t(16) * 64;
  const auto whole1 = c.run(std::vector<int32_t>(130, 1), range(0, 130));
  const auto whole2 = c.run(std::vector<int32_t>(90, 2), range(0, 90));
  int f1 = 0, f2 = 0;
  for (int step = 0; step < 3; ++step) {
    const int n1 = step == 2 ? 130 - f1 : 47, n2 = step == 2 ? 90 - f2 : 29;
    std::vector<int32_t> rows(n1, 1), pos = range(f1, f1 + n1);
    rows.insert(rows.end(), size_t(n2), 2);
    const auto p2 = range(f2, f2 + n2);
    pos.insert(pos.end(), p2.begin(), p2.end());
    const auto out = c.run(rows, pos);
    c.require_matches_reference(out, rows, pos);
    REQUIRE(same_bits(out.data(), whole1.data() + f1 * row, n1 * row));
    REQUIRE(same_bits(out.data() + n1 * row, whole2.data() + f2 * row, n2 * row));
    f1 += n1;
    f2 += n2;
  }
}

TEST_CASE("cpu kv_append writes exactly the cells of the block table", "[ops][paged]") {
  const int n_blocks = 12, bs = 4, nkv = 2, hd = 8, kv_dim = nkv * hd, stride = 5;
  // Row 0: blocks 7 3 10; row 1: blocks 2 -1 (never written) 5 0.
  const std::vector<int32_t> table = {7, 3, 10, -1, -1, 2, -1, 5, 0, -1};
  const std::vector<int32_t> rows = {0, 0, 1, 0, 1, 1}, pos = {0, 5, 9, 11, 15, 2};
  const int T = static_cast<int>(rows.size());
  const auto k = randn(size_t(T) * kv_dim, 5), v = randn(size_t(T) * kv_dim, 6);
  std::vector<float> kc(size_t(n_blocks) * bs * kv_dim, 0.0f), vc(kc.size(), 0.0f);
  tpinfer::cpu::kv_append(kc.data(), vc.data(), k.data(), v.data(), rows.data(), pos.data(),
                          table.data(), stride, T, bs, kv_dim);
  std::vector<float> ek(kc.size(), 0.0f), ev(kc.size(), 0.0f);
  for (int t = 0; t < T; ++t) {
    const int blk = table[size_t(rows[t]) * stride + pos[t] / bs];
    const size_t at = (size_t(blk) * bs + pos[t] % bs) * kv_dim;
    std::memcpy(ek.data() + at, k.data() + size_t(t) * kv_dim, sizeof(float) * kv_dim);
    std::memcpy(ev.data() + at, v.data() + size_t(t) * kv_dim, sizeof(float) * kv_dim);
  }
  // Spelled out for two of them: row 0 position 5 is block 3 offset 1; row 1 position 15 is
  // block 0 offset 3.
  REQUIRE(ek[(3 * bs + 1) * kv_dim] == k[1 * kv_dim]);
  REQUIRE(ek[(0 * bs + 3) * kv_dim + kv_dim - 1] == k[4 * kv_dim + kv_dim - 1]);
  REQUIRE(kc == ek);
  REQUIRE(vc == ev);
}

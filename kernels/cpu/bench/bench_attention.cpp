// Microbenchmark of the CPU paged attention (cpu::attention), single thread: decode (16
// sequences of one token at ~1.8k context) and prefill (one 512-token chunk after 1k cached
// tokens, i.e. up to 1.5k context), 32 query / 8 KV heads, head_dim 128, blocks of 16 positions
// in a shuffled pool; then decode on the llama-100m shape (12 / 4 heads, head_dim 64, 8
// sequences at ~300 positions) with the blocks placed three ways: each sequence's consecutive,
// interleaved as a fresh pool hands them to 8 streams decoding in lockstep, and shuffled. Prints
// the minimum over repeats (ms per call). Usage:
//   OMP_NUM_THREADS=1 tpinfer-bench-attention [repeats=5]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/cpu_kernels.h"

namespace {

constexpr int kBlock = 16;

enum class Placement { contiguous, interleaved, shuffled };

struct Case {
  const char* name;
  std::vector<int32_t> rows, pos;
  int n_seqs, ctx;  // sequences in the pool, positions per sequence
  int heads = 32, kv_heads = 8, hd = 128;
  Placement placement = Placement::shuffled;
};

double run(const Case& c, int repeats, int iters) {
  const int kv_dim = c.kv_heads * c.hd, T = static_cast<int>(c.rows.size());
  const int blocks_per_seq = (c.ctx + kBlock - 1) / kBlock;
  const int n_blocks = c.n_seqs * blocks_per_seq;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> kc(size_t(n_blocks) * kBlock * kv_dim), vc(kc.size());
  for (float& x : kc) x = nd(rng);
  for (float& x : vc) x = nd(rng);
  // Row s of the table: sequence s's blocks.
  std::vector<int32_t> table(n_blocks);
  std::iota(table.begin(), table.end(), 0);
  if (c.placement == Placement::shuffled) std::shuffle(table.begin(), table.end(), rng);
  if (c.placement == Placement::interleaved) {
    for (int s = 0; s < c.n_seqs; ++s)
      for (int b = 0; b < blocks_per_seq; ++b) table[s * blocks_per_seq + b] = b * c.n_seqs + s;
  }
  std::vector<float> q(size_t(T) * c.heads * c.hd), out(q.size());
  for (float& x : q) x = nd(rng);
  const float scale = 1.0f / std::sqrt(float(c.hd));
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i)
      tpinfer::cpu::attention(out.data(), q.data(), kc.data(), vc.data(), c.rows.data(),
                              c.pos.data(), table.data(), blocks_per_seq, T, c.heads, c.kv_heads,
                              c.hd, kBlock, 0, scale);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ms / iters);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 5;
  Case decode{"decode T=16 ctx~1.8k", {}, {}, 16, 1900};
  for (int s = 0; s < 16; ++s) decode.rows.push_back(s), decode.pos.push_back(1790 + 7 * s);
  Case prefill{"prefill 512 at 1k..1.5k", {}, {}, 1, 1536};
  for (int t = 0; t < 512; ++t) prefill.rows.push_back(0), prefill.pos.push_back(1024 + t);
  std::printf("%-34s %8.3f ms\n", decode.name, run(decode, repeats, 20));
  std::printf("%-34s %8.3f ms\n", prefill.name, run(prefill, repeats, 2));
  const std::pair<Placement, const char*> placements[] = {
      {Placement::contiguous, "decode 12/4 hd64 T=8 ~300, contig"},
      {Placement::interleaved, "decode 12/4 hd64 T=8 ~300, lockstep"},
      {Placement::shuffled, "decode 12/4 hd64 T=8 ~300, shuffled"}};
  for (const auto& [placement, name] : placements) {
    Case small{name, {}, {}, 8, 320, 12, 4, 64, placement};
    for (int s = 0; s < 8; ++s) small.rows.push_back(s), small.pos.push_back(300 - 3 * s);
    std::printf("%-34s %8.3f ms\n", small.name, run(small, repeats, 200));
  }
  return 0;
}

// Microbenchmark of the CPU paged attention (cpu::attention), single thread: decode (16
// sequences of one token at ~1.8k context) and prefill (one 512-token chunk after 1k cached
// tokens, i.e. up to 1.5k context), 32 query / 8 KV heads, head_dim 128, blocks of 16 positions
// in a shuffled pool. Prints the minimum over repeats (ms per call). Usage:
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

constexpr int kHeads = 32, kKvHeads = 8, kHd = 128, kBlock = 16;

struct Case {
  const char* name;
  std::vector<int32_t> rows, pos;
  int n_seqs, ctx;  // sequences in the pool, positions per sequence
};

double run(const Case& c, int repeats, int iters) {
  const int kv_dim = kKvHeads * kHd, T = static_cast<int>(c.rows.size());
  const int blocks_per_seq = (c.ctx + kBlock - 1) / kBlock;
  const int n_blocks = c.n_seqs * blocks_per_seq;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> kc(size_t(n_blocks) * kBlock * kv_dim), vc(kc.size());
  for (float& x : kc) x = nd(rng);
  for (float& x : vc) x = nd(rng);
  std::vector<int32_t> table(n_blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<float> q(size_t(T) * kHeads * kHd), out(q.size());
  for (float& x : q) x = nd(rng);
  const float scale = 1.0f / std::sqrt(float(kHd));
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i)
      tpinfer::cpu::attention(out.data(), q.data(), kc.data(), vc.data(), c.rows.data(),
                              c.pos.data(), table.data(), blocks_per_seq, T, kHeads, kKvHeads, kHd,
                              kBlock, 0, scale);
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
  std::printf("%-26s %8.3f ms\n", decode.name, run(decode, repeats, 20));
  std::printf("%-26s %8.3f ms\n", prefill.name, run(prefill, repeats, 2));
  return 0;
}

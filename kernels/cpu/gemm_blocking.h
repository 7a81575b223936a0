// The loop nest every ISA path of gemm.h shares (included by each per-ISA file, so each gets its
// own copy compiled for its ISA): N split into blocks that fit in L2 and spread over the OpenMP
// threads; inside a block, tiles of MT tokens x NT rows (Tile::run<MT, NT>), the token tile
// outermost so its activations stay in L1 while the block's weights stay in L2.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace tpinfer::cpu {
namespace {

// Below this many multiply-adds a fork/join costs more than it saves.
constexpr int64_t kGemmParallelMinWork = 1 << 16;

template <class Tile, int MT, int NT>
inline void row_tiles(const Tile& tile, int t0, int n0, int n1) {
  int n = n0;
  for (; n + NT <= n1; n += NT) tile.template run<MT, NT>(t0, n);
  for (; n < n1; ++n) tile.template run<MT, 1>(t0, n);
}

// Tile: run<MT, NT>(t0, n0) computes out[t0..t0+MT) x [n0..n0+NT); kNT is its widest NT for
// MT > 1 and kNT1 for MT = 1 (decode).
template <class Tile>
inline void blocked(const Tile& tile, int T, int N, int K, int weight_bytes) {
  const int threads = omp_get_max_threads();
  // Rows per block: about 256 KiB of weights, and at least 4 blocks per thread to balance.
  int nb = static_cast<int>((256 * 1024) / (int64_t{K} * weight_bytes));
  nb = std::min(nb, (N + 4 * threads - 1) / (4 * threads));
  nb = std::max(8, (nb + 7) / 8 * 8);
  const int n_blocks = (N + nb - 1) / nb;
#pragma omp parallel for schedule(static) if (int64_t{T} * N * K >= kGemmParallelMinWork)
  for (int b = 0; b < n_blocks; ++b) {
    const int n0 = b * nb, n1 = std::min(N, n0 + nb);
    int t = 0;
    for (; t + 4 <= T; t += 4) row_tiles<Tile, 4, Tile::kNT>(tile, t, n0, n1);
    switch (T - t) {
      case 3:
        row_tiles<Tile, 3, Tile::kNT>(tile, t, n0, n1);
        break;
      case 2:
        row_tiles<Tile, 2, Tile::kNT>(tile, t, n0, n1);
        break;
      case 1:
        row_tiles<Tile, 1, Tile::kNT1>(tile, t, n0, n1);
        break;
      default:
        break;
    }
  }
}

}  // namespace
}  // namespace tpinfer::cpu

// The loop nests every ISA path of gemm.h shares (included by each per-ISA file, so each gets its
// own copy compiled for its ISA), chosen by the number of tokens T:
// - panel (decode and small batches, T <= Tile::kPanelMaxT): the threads take contiguous chunks
//   of rows (a few each, dynamically) and stream every weight once for all T tokens: the tile
//   holds all T tokens' sums for a few rows in registers over the whole of K, and prefetches the
//   next row group.
// - blocked (prefill): N split into blocks that fit in L2, handed to the threads dynamically (at
//   least 4 per thread, so a preempted thread does not hold the others at the join); inside a
//   block, tiles of MT tokens x NT rows, the token tile outermost so its activations stay in L1
//   while the block's weights stay in L2.
// Both reduce every output in the same steps over K, so either gives the same bits.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "cpu/gemm.h"

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
#pragma omp parallel for schedule(dynamic, 1) if (int64_t{T} * N * K >= kGemmParallelMinWork)
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

// Chunks of rows start at multiples of this many (every tile height of the panel divides it).
constexpr int kPanelRowAlign = 24;

template <class Tile, int MT>
inline void panel_rows(const Tile& tile, int n0, int n1) {
  constexpr int NT = Tile::rows_for(MT);
  int n = n0;
  for (; n + NT <= n1; n += NT) {
    // Software prefetch of the next group pays when the tile computes long enough per byte to
    // hide it (MT >= 4); below, the hardware prefetcher alone streams faster (measured).
    const bool prefetch = MT >= 4 && n + 2 * NT <= n1;
    tile.template run<MT, NT>(0, n, prefetch ? tile.w + int64_t{n + NT} * tile.K : nullptr);
  }
  for (; n < n1; ++n) tile.template run<MT, 1>(0, n);
}

template <class Tile, int... Ts>
inline void panel_dispatch(const Tile& tile, int T, int n0, int n1,
                           std::integer_sequence<int, Ts...>) {
  ((T == Ts + 1 ? panel_rows<Tile, Ts + 1>(tile, n0, n1) : void()), ...);
}

// Rows are handed out in contiguous chunks, a few per thread, first come first served: a thread
// that was preempted (a shared node, other jobs) leaves its chunks to the others instead of
// holding every thread at the join.
constexpr int kPanelChunksPerThread = 4;

template <class Tile>
inline void panel(const Tile& tile, int T, int N, int K) {
  const int groups = (N + kPanelRowAlign - 1) / kPanelRowAlign;
  const int chunks = std::min(groups, omp_get_max_threads() * kPanelChunksPerThread);
#pragma omp parallel for schedule(dynamic, 1) if (int64_t{T} * N * K >= kGemmParallelMinWork)
  for (int c = 0; c < chunks; ++c) {
    const int n0 = std::min(N, static_cast<int>(int64_t{groups} * c / chunks) * kPanelRowAlign);
    const int n1 =
        std::min(N, static_cast<int>(int64_t{groups} * (c + 1) / chunks) * kPanelRowAlign);
    panel_dispatch(tile, T, n0, n1, std::make_integer_sequence<int, Tile::kPanelMaxT>{});
  }
}

// The path for T tokens.
template <class Tile>
inline void matmul(const Tile& tile, int T, int N, int K, int weight_bytes) {
  if (T <= std::min(Tile::kPanelMaxT, panel_max_tokens())) {
    panel(tile, T, N, K);
  } else {
    blocked(tile, T, N, K, weight_bytes);
  }
}

}  // namespace
}  // namespace tpinfer::cpu

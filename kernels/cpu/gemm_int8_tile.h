// The int8 loop nest every SIMD path of gemm_int8.h shares, and the pieces of its fixed float
// order (included by each per-ISA file, so each gets its own copy compiled for its ISA). Rows
// are split into blocks spread over the OpenMP threads; inside a block, tiles of MT tokens x NT
// rows (Tile::run<MT, NT>) with the token tile outermost, so the block's weights stay in cache
// while every token tile passes over them.
#pragma once

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/gemm_int8.h"

namespace tpinfer::cpu {
namespace {

inline float int8_hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// The scale of block b for row n: s_b of gemm_int8.h without the activation part (the row's
// scale of the block's group; 1 when one scale covers the row, which multiplies the result; 0
// for a padding block). ng = groups per row, bpg = blocks per group (group / 32).
inline float int8_block_wscale(const float* ws, int n, int b, int ng, int bpg, int K) {
  if (b * kInt8Block >= K) return 0.f;
  if (ng == 1) return 1.f;
  return ws[int64_t{n} * ng + (bpg == 1 ? b : b / bpg)];
}

// The end of every row: lanes v[0..8) summed in gemm_int8.h's order, times the row's scale when
// one scale covers the row.
inline float int8_finish(__m256 v, const float* ws, int n, int group, int K) {
  const float h = int8_hsum(v);
  return group >= K ? h * ws[n] : h;
}

template <class Tile, int MT, int NT>
inline void int8_row_tiles(const Tile& tile, int t0, int n0, int n1) {
  int n = n0;
  for (; n + NT <= n1; n += NT) tile.template run<MT, NT>(t0, n);
  for (; n < n1; ++n) tile.template run<MT, 1>(t0, n);
}

// MT x Tile::kNT tiles (decode: 1 x Tile::kNT1 rows, for more independent load streams).
template <class Tile>
inline void int8_blocked(const Tile& tile, int T, int N, int K) {
  constexpr int NT = Tile::kNT, NT1 = Tile::kNT1;
  const int threads = omp_get_max_threads();
  // Rows per block: about 256 KiB of weights, and at least 4 blocks per thread to balance.
  int nb = static_cast<int>((256 * 1024) / std::max(1, K));
  nb = std::min(nb, (N + 4 * threads - 1) / (4 * threads));
  nb = std::max(8, (nb + 7) / 8 * 8);
  const int n_blocks = (N + nb - 1) / nb;
#pragma omp parallel for schedule(static) if (int64_t{T} * N * K >= (1 << 16))
  for (int blk = 0; blk < n_blocks; ++blk) {
    const int n0 = blk * nb, n1 = std::min(N, n0 + nb);
    int t = 0;
    for (; t + 4 <= T; t += 4) int8_row_tiles<Tile, 4, NT>(tile, t, n0, n1);
    switch (T - t) {
      case 3:
        int8_row_tiles<Tile, 3, NT>(tile, t, n0, n1);
        break;
      case 2:
        int8_row_tiles<Tile, 2, NT>(tile, t, n0, n1);
        break;
      case 1:
        int8_row_tiles<Tile, 1, NT1>(tile, t, n0, n1);
        break;
      default:
        break;
    }
  }
}

}  // namespace
}  // namespace tpinfer::cpu

// The int8 loop nest and register tile every SIMD path of gemm_int8.h shares (included by each
// per-ISA file, so each gets its own copy compiled for its ISA; only the 8-lane integer block dot
// product `Dot::dot` differs). Rows are split into blocks spread over the OpenMP threads; inside
// a block, tiles of MT tokens x NT rows with the token tile outermost, so the block's weights stay
// in cache while every token tile passes over them. The float arithmetic is the fixed order that
// gemm_int8.h describes, so every path returns the portable path's bits.
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

template <class Dot>
struct Int8Tile {
  float* out;
  const Int8Acts& a;
  const int8_t* w;
  const float* ws;
  int group, N, K;

  // 32 weights of row n, block b (the K tail zero-padded through tmp).
  __m256i load_w(int n, int b, int8_t* tmp) const {
    const int8_t* p = w + int64_t{n} * K + int64_t{b} * kInt8Block;
    const int rest = K - b * kInt8Block;
    if (rest >= kInt8Block) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    std::memset(tmp, 0, kInt8Block);
    std::memcpy(tmp, p, static_cast<size_t>(rest));
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tmp));
  }

  template <int MT, int NT>
  void run(int t0, int n0) const {
    const int nbk = a.Kp / kInt8Block;
    const int ng = (K + group - 1) / group;
    __m256 acc[MT][NT];
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
    alignas(32) int8_t tmp[kInt8Block];
    for (int b = 0; b < nbk; ++b) {
      const int g = b * kInt8Block / group;
      __m256i wv[NT], wabs[NT];
      float sw[NT];
      for (int j = 0; j < NT; ++j) {
        wv[j] = load_w(n0 + j, b, tmp);
        wabs[j] = _mm256_sign_epi8(wv[j], wv[j]);
        sw[j] = ws[int64_t{n0 + j} * ng + g];
      }
      for (int i = 0; i < MT; ++i) {
        const int64_t row = t0 + i;
        const __m256i av = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a.q + row * a.Kp + int64_t{b} * kInt8Block));
        const float sa = a.scales[row * nbk + b];
        for (int j = 0; j < NT; ++j) {
          const __m256i d = Dot::dot(wabs[j], _mm256_sign_epi8(av, wv[j]));
          const __m256 s = _mm256_set1_ps(sa * sw[j]);
          acc[i][j] = _mm256_add_ps(acc[i][j], _mm256_mul_ps(_mm256_cvtepi32_ps(d), s));
        }
      }
    }
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) out[int64_t{t0 + i} * N + n0 + j] = int8_hsum(acc[i][j]);
  }
};

template <class Tile, int MT, int NT>
inline void int8_row_tiles(const Tile& tile, int t0, int n0, int n1) {
  int n = n0;
  for (; n + NT <= n1; n += NT) tile.template run<MT, NT>(t0, n);
  for (; n < n1; ++n) tile.template run<MT, 1>(t0, n);
}

// MT x NT tiles (decode: 1 x NT1 rows, for more independent load streams).
template <class Tile, int NT, int NT1>
inline void int8_blocked(const Tile& tile, int T, int N, int K) {
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

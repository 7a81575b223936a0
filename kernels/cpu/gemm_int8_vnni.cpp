// The AVX512-VNNI int8 path of gemm_int8.h (compiled with AVX-512 F/BW/VL + VNNI; called only
// when the CPU has them): two 32-weight blocks per 512-bit register, whose 16-lane integer dot
// product is one vpdpbusd (activations + 128 unsigned x weights, started from -128 x the
// weights' sums, computed once per row and shared by the token tile), converted and
// accumulated with one FMA against the two blocks' scales (lanes 0-7 the even block, 8-15 the
// odd: gemm_int8.h's order). 32 registers hold a 4 x 4 tile (decode: 1 x 8 rows).
#include <immintrin.h>

#include "cpu/gemm_int8_tile.h"

// GCC 12 at -O3 reports the placeholder operand of its own AVX-512 intrinsics
// (_mm512_undefined_*, inside _mm512_cvtepi32_ps and _mm512_extractf64x4_pd) as uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpinfer::cpu {
namespace {

struct TileVnni {
  static constexpr int kNT = 4;
  static constexpr int kNT1 = 8;
  float* out;
  const Int8Acts& a;
  const int8_t* w;
  const float* ws;
  int group, N, K;

  // 64 weights of row n from pair p of blocks (the K tail and padding zero-filled through tmp).
  __m512i load_w(int n, int p, int8_t* tmp) const {
    const int8_t* ptr = w + int64_t{n} * K + int64_t{p} * kInt8Pad;
    const int rest = K - p * kInt8Pad;
    if (rest >= kInt8Pad) return _mm512_loadu_si512(ptr);
    std::memset(tmp, 0, kInt8Pad);
    if (rest > 0) std::memcpy(tmp, ptr, static_cast<size_t>(rest));
    return _mm512_loadu_si512(tmp);
  }

  // [x0 x 8 | x1 x 8]
  static __m512 pair(float x0, float x1) {
    return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(x0), _mm512_set1_ps(x1));
  }

  // [x[0] x 8 | x[1] x 8] from two consecutive floats (an unaligned 8-byte load).
  static __m512 pair_at(const float* x) {
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_castsi128_ps(
                                          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)))));
  }

  // One pair p of blocks for the tile. kFull: both blocks inside K (plain loads, no checks);
  // else the last pair, with the K tail and padding handled as gemm_int8.h says.
  template <int MT, int NT, bool kFull>
  void pair_step(int t0, int n0, int p, int nbk, int ng, int bpg, __m512 (&acc)[MT][NT]) const {
    const int b0 = 2 * p, b1 = b0 + 1;
    const bool per_row = ng == 1;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    alignas(64) int8_t tmp[kInt8Pad];
    // vpdpbusd multiplies unsigned by signed bytes: the activations go in as a + 128 (unsigned),
    // and each lane's accumulator starts at -128 x (its 4 weights' sum), so it ends at exactly
    // sum(a x w).
    __m512i wv[NT], start[NT];
    __m512 sw[NT];
    for (int j = 0; j < NT; ++j) {
      const int64_t n = n0 + j;
      wv[j] =
          kFull ? _mm512_loadu_si512(w + n * K + int64_t{p} * kInt8Pad) : load_w(n0 + j, p, tmp);
      start[j] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, wv[j]));
      if (per_row) continue;
      if (kFull && bpg == 1) {
        sw[j] = pair_at(ws + n * ng + b0);
      } else {
        sw[j] = pair(int8_block_wscale(ws, n0 + j, b0, ng, bpg, K),
                     int8_block_wscale(ws, n0 + j, b1, ng, bpg, K));
      }
    }
    for (int i = 0; i < MT; ++i) {
      const int64_t row = t0 + i;
      const __m512i au =
          _mm512_xor_si512(_mm512_loadu_si512(a.q + row * a.Kp + int64_t{p} * kInt8Pad), bias);
      const float* sa = a.scales + row * nbk + b0;
      // s_b = sa_b (times sw_b for blocks), 0 for a padding block (its activations are zero).
      const __m512 sa2 =
          kFull ? pair_at(sa)
                : pair(b0 * kInt8Block >= K ? 0.f : sa[0], b1 * kInt8Block >= K ? 0.f : sa[1]);
      for (int j = 0; j < NT; ++j) {
        const __m512i d = _mm512_dpbusd_epi32(start[j], au, wv[j]);
        const __m512 s = per_row ? sa2 : _mm512_mul_ps(sa2, sw[j]);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), s, acc[i][j]);
      }
    }
  }

  template <int MT, int NT>
  void run(int t0, int n0) const {
    const int nbk = a.Kp / kInt8Block;
    const int ng = (K + group - 1) / group, bpg = group / kInt8Block;
    __m512 acc[MT][NT];
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
    const int full = K / kInt8Pad;
    for (int p = 0; p < full; ++p) pair_step<MT, NT, true>(t0, n0, p, nbk, ng, bpg, acc);
    if (full < nbk / 2) pair_step<MT, NT, false>(t0, n0, full, nbk, ng, bpg, acc);
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) {
        const __m256 v =
            _mm256_add_ps(_mm512_castps512_ps256(acc[i][j]),
                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i][j]), 1)));
        out[int64_t{t0 + i} * N + n0 + j] = int8_finish(v, ws, n0 + j, group, K);
      }
  }
};

}  // namespace

void gemm_int8_avx512vnni(float* out, const Int8Acts& a, const int8_t* w, const float* wscales,
                          int group, int T, int N, int K) {
  int8_blocked(TileVnni{out, a, w, wscales, group, N, K}, T, N, K);
}

}  // namespace tpinfer::cpu

// The AVX-512 paths of gemm.h (this file is compiled with AVX-512F/BW/VL/BF16 + FMA flags and
// only called when the CPU has them): 16-lane FMA tiles for f32 and bf16 weights (bf16 widened
// to f32 in registers), and vdpbf16ps tiles that take the activations rounded to bf16.
#include <immintrin.h>

#include <cstring>
#include <vector>

// GCC 12's AVX-512 intrinsics initialise their undefined pass-through operand from itself and
// warn at every inlined use (GCC PR 105593, fixed in GCC 13); nothing here reads it.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "cpu/gemm.h"
#include "cpu/gemm_blocking.h"

namespace tpinfer::cpu {
namespace {

inline __m512 load_w(const float* p) {
  return _mm512_loadu_ps(p);
}
inline __m512 load_w(const uint16_t* p) {
  const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
inline __m512 load_w_tail(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
inline __m512 load_w_tail(const uint16_t* p, __mmask16 m) {
  const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

// Fixed-order horizontal sum (the compiler's _mm512_reduce_add_ps warns in GCC 12's headers).
inline float hsum(__m512 v) {
  const __m128 z = _mm_setzero_ps();
  const __m128 s = _mm_add_ps(_mm_add_ps(_mm512_mask_extractf32x4_ps(z, 0xf, v, 0),
                                         _mm512_mask_extractf32x4_ps(z, 0xf, v, 2)),
                              _mm_add_ps(_mm512_mask_extractf32x4_ps(z, 0xf, v, 1),
                                         _mm512_mask_extractf32x4_ps(z, 0xf, v, 3)));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// The tiles below compute out[t0..t0+MT) x [n0..n0+NT) (run<MT, NT>), one accumulator per
// output walking K in the same steps whatever the tile or batch, so the sums are the same bits.
// With `pf` set, the rows at pf (the next row group) are prefetched at the same offsets as the
// tile reads. rows_for(MT): the rows of the decode panel's tile (gemm_blocking.h) for MT <=
// kPanelMaxT tokens, all sums in registers (MT x NT sums + NT weights + 1 activation <= 32;
// at T = 1, 12 rows measured 5% more GB/s than 8 and as much as 16).

// f32 activations x weights of type W, 16 lanes over K, FMA.
template <class W>
struct FmaTile {
  static constexpr int kNT = 4;
  static constexpr int kNT1 = 8;
  static constexpr int kPanelMaxT = 8;
  static constexpr int rows_for(int mt) {
    return mt == 1 ? 12 : mt == 2 ? 8 : mt == 3 ? 6 : mt <= 6 ? 4 : 3;
  }
  float* out;
  const float* in;
  const W* w;
  int N, K;

  template <int MT, int NT>
  void run(int t0, int n0, const W* pf = nullptr) const {
    __m512 acc[MT][NT];
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
    const float* x = in + int64_t{t0} * K;
    const W* wr = w + int64_t{n0} * K;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
      if (pf != nullptr && k % (64 / sizeof(W)) == 0)
        for (int j = 0; j < NT; ++j)
          _mm_prefetch(reinterpret_cast<const char*>(pf + int64_t{j} * K + k), _MM_HINT_T0);
      __m512 wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = load_w(wr + int64_t{j} * K + k);
      for (int i = 0; i < MT; ++i) {
        const __m512 xv = _mm512_loadu_ps(x + int64_t{i} * K + k);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
      }
    }
    if (k < K) {
      const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);
      __m512 wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = load_w_tail(wr + int64_t{j} * K + k, m);
      for (int i = 0; i < MT; ++i) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + int64_t{i} * K + k);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) out[int64_t{t0 + i} * N + n0 + j] = hsum(acc[i][j]);
  }
};

// bf16 activations x bf16 weights, 32 products per vdpbf16ps into 16 f32 lanes.
struct DpbfTile {
  static constexpr int kNT = 4;
  static constexpr int kNT1 = 8;
  static constexpr int kPanelMaxT = 8;
  static constexpr int rows_for(int mt) {
    return mt == 1 ? 12 : mt == 2 ? 8 : mt == 3 ? 6 : mt <= 6 ? 4 : 3;
  }
  float* out;
  const uint16_t* in;  // activations already rounded to bf16
  const uint16_t* w;
  int N, K;

  template <int MT, int NT>
  void run(int t0, int n0, const uint16_t* pf = nullptr) const {
    __m512 acc[MT][NT];
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
    const uint16_t* x = in + int64_t{t0} * K;
    const uint16_t* wr = w + int64_t{n0} * K;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
      if (pf != nullptr)
        for (int j = 0; j < NT; ++j)
          _mm_prefetch(reinterpret_cast<const char*>(pf + int64_t{j} * K + k), _MM_HINT_T0);
      __m512i wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = _mm512_loadu_si512(wr + int64_t{j} * K + k);
      for (int i = 0; i < MT; ++i) {
        const __m512i xv = _mm512_loadu_si512(x + int64_t{i} * K + k);
        for (int j = 0; j < NT; ++j)
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
      }
    }
    if (k < K) {
      const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (K - k)) - 1);
      __m512i wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = _mm512_maskz_loadu_epi16(m, wr + int64_t{j} * K + k);
      for (int i = 0; i < MT; ++i) {
        const __m512i xv = _mm512_maskz_loadu_epi16(m, x + int64_t{i} * K + k);
        for (int j = 0; j < NT; ++j)
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv, (__m512bh)wv[j]);
      }
    }
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) out[int64_t{t0 + i} * N + n0 + j] = hsum(acc[i][j]);
  }
};

// Round-to-nearest-even f32 -> bf16 (NaN kept a NaN), the same as vcvtne2ps2bf16.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace

void gemm_f32_avx512(float* out, const float* in, const float* w, int T, int N, int K) {
  matmul(FmaTile<float>{out, in, w, N, K}, T, N, K, 4);
}

void gemm_bf16_avx512(float* out, const float* in, const uint16_t* w, int T, int N, int K) {
  matmul(FmaTile<uint16_t>{out, in, w, N, K}, T, N, K, 2);
}

void gemm_bf16_avx512bf16(float* out, const float* in, const uint16_t* w, int T, int N, int K) {
  thread_local std::vector<uint16_t> xb;
  const int64_t n = int64_t{T} * K;
  if (static_cast<int64_t>(xb.size()) < n) xb.resize(n);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i));
    _mm512_storeu_si512(xb.data() + i, (__m512i)v);
  }
  for (; i < n; ++i) xb[i] = to_bf16(in[i]);
  matmul(DpbfTile{out, xb.data(), w, N, K}, T, N, K, 2);
}

}  // namespace tpinfer::cpu

// The AVX2 paths of gemm.h (this file is compiled with AVX2 + FMA and without AVX-512, and only
// called when the CPU has them): 8-lane FMA tiles for f32 and bf16 weights (bf16 widened to f32
// in registers); the K tail (K % 8) is a scalar sum added after the lane sum.
#include <immintrin.h>

#include <cstring>

#include "cpu/gemm.h"
#include "cpu/gemm_blocking.h"

namespace tpinfer::cpu {
namespace {

inline __m256 load_w(const float* p) {
  return _mm256_loadu_ps(p);
}
inline __m256 load_w(const uint16_t* p) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
inline float scalar(float v) {
  return v;
}
inline float scalar(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// 16 ymm registers: MT x NT accumulators + NT weight vectors + 1 activation vector. With `pf`
// set, the rows at pf (the next row group) are prefetched at the same offsets as the tile reads.
// rows_for(MT): the rows of the decode panel's tile (gemm_blocking.h) for MT tokens.
template <class W>
struct FmaTile {
  static constexpr int kNT = 3;
  static constexpr int kNT1 = 6;
  static constexpr int kPanelMaxT = 4;
  static constexpr int rows_for(int mt) { return mt == 1 ? 6 : mt == 2 ? 4 : 3; }  // divide 24
  float* out;
  const float* in;
  const W* w;
  int N, K;

  template <int MT, int NT>
  void run(int t0, int n0, const W* pf = nullptr) const {
    __m256 acc[MT][NT];
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
    const float* x = in + int64_t{t0} * K;
    const W* wr = w + int64_t{n0} * K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
      if (pf != nullptr && k % (64 / sizeof(W)) == 0)
        for (int j = 0; j < NT; ++j)
          _mm_prefetch(reinterpret_cast<const char*>(pf + int64_t{j} * K + k), _MM_HINT_T0);
      __m256 wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = load_w(wr + int64_t{j} * K + k);
      for (int i = 0; i < MT; ++i) {
        const __m256 xv = _mm256_loadu_ps(x + int64_t{i} * K + k);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) {
        float s = 0.f;
        for (int r = k; r < K; ++r) s += x[int64_t{i} * K + r] * scalar(wr[int64_t{j} * K + r]);
        out[int64_t{t0 + i} * N + n0 + j] = hsum(acc[i][j]) + s;
      }
  }
};

}  // namespace

void gemm_f32_avx2(float* out, const float* in, const float* w, int T, int N, int K) {
  matmul(FmaTile<float>{out, in, w, N, K}, T, N, K, 4);
}

void gemm_bf16_avx2(float* out, const float* in, const uint16_t* w, int T, int N, int K) {
  matmul(FmaTile<uint16_t>{out, in, w, N, K}, T, N, K, 2);
}

}  // namespace tpinfer::cpu

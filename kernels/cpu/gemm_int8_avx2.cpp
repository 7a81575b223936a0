// The AVX2 int8 path of gemm_int8.h (compiled with AVX2 + FMA and without AVX-512; called only
// when the CPU has them): one 32-weight block per 256-bit register; its 8-lane integer dot
// product is maddubs (|w| unsigned x sign-moved activations, pairs to int16: at most 2 x 127 x
// 127, never saturating) then madd with ones; even and odd blocks go to two accumulators (the
// 16 lanes of gemm_int8.h's order).
#include <immintrin.h>

#include "cpu/gemm_int8_tile.h"

namespace tpinfer::cpu {
namespace {

struct TileAvx2 {
  static constexpr int kNT = 1;
  static constexpr int kNT1 = 3;
  float* out;
  const Int8Acts& a;
  const int8_t* w;
  const float* ws;
  int group, N, K;

  // 32 weights of row n, block b (the K tail and padding blocks zero-filled through tmp).
  __m256i load_w(int n, int b, int8_t* tmp) const {
    const int8_t* p = w + int64_t{n} * K + int64_t{b} * kInt8Block;
    const int rest = K - b * kInt8Block;
    if (rest >= kInt8Block) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    std::memset(tmp, 0, kInt8Block);
    if (rest > 0) std::memcpy(tmp, p, static_cast<size_t>(rest));
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tmp));
  }

  template <int MT, int NT>
  void run(int t0, int n0) const {
    const int nbk = a.Kp / kInt8Block;
    const int ng = (K + group - 1) / group, bpg = group / kInt8Block;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MT][NT][2];
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
    alignas(32) int8_t tmp[kInt8Block];
    for (int b = 0; b < nbk; ++b) {
      __m256i wv[NT], wabs[NT];
      float sw[NT];
      for (int j = 0; j < NT; ++j) {
        wv[j] = load_w(n0 + j, b, tmp);
        wabs[j] = _mm256_sign_epi8(wv[j], wv[j]);
        sw[j] = int8_block_wscale(ws, n0 + j, b, ng, bpg, K);
      }
      for (int i = 0; i < MT; ++i) {
        const int64_t row = t0 + i;
        const __m256i av = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a.q + row * a.Kp + int64_t{b} * kInt8Block));
        const float sa = a.scales[row * nbk + b];
        for (int j = 0; j < NT; ++j) {
          const __m256i d =
              _mm256_madd_epi16(_mm256_maddubs_epi16(wabs[j], _mm256_sign_epi8(av, wv[j])), ones);
          const float s = group >= K ? (b * kInt8Block >= K ? 0.f : sa) : sa * sw[j];
          __m256& lane = acc[i][j][b & 1];
          lane = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(s), lane);
        }
      }
    }
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) {
        out[int64_t{t0 + i} * N + n0 + j] =
            int8_finish(_mm256_add_ps(acc[i][j][0], acc[i][j][1]), ws, n0 + j, group, K);
      }
  }
};

}  // namespace

void gemm_int8_avx2(float* out, const Int8Acts& a, const int8_t* w, const float* wscales, int group,
                    int T, int N, int K) {
  int8_blocked(TileAvx2{out, a, w, wscales, group, N, K}, T, N, K);
}

}  // namespace tpinfer::cpu

// The AVX2 int8 path of gemm_int8.h (compiled with AVX2 and without AVX-512; called only when the
// CPU has AVX2): a block's 8-lane integer dot product as maddubs (|w| unsigned x sign-moved
// activations, pairs to int16: at most 2 x 127 x 127, never saturating) then madd with ones.
#include <immintrin.h>

#include "cpu/gemm_int8_tile.h"

namespace tpinfer::cpu {
namespace {

struct DotAvx2 {
  static __m256i dot(__m256i wabs, __m256i a_signed) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, a_signed), _mm256_set1_epi16(1));
  }
};

}  // namespace

void gemm_int8_avx2(float* out, const Int8Acts& a, const int8_t* w, const float* wscales, int group,
                    int T, int N, int K) {
  int8_blocked<Int8Tile<DotAvx2>, 2, 4>(Int8Tile<DotAvx2>{out, a, w, wscales, group, N, K}, T, N,
                                        K);
}

}  // namespace tpinfer::cpu

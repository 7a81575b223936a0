// The AVX512-VNNI int8 path of gemm_int8.h (compiled with AVX-512 VL + VNNI; called only when the
// CPU has them): a block's 8-lane integer dot product is one vpdpbusd on 256-bit registers
// (|w| unsigned x sign-moved activations), and the 32 vector registers hold a 4 x 4 tile.
#include <immintrin.h>

#include "cpu/gemm_int8_tile.h"

namespace tpinfer::cpu {
namespace {

struct DotVnni {
  static __m256i dot(__m256i wabs, __m256i a_signed) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), wabs, a_signed);
  }
};

}  // namespace

void gemm_int8_avx512vnni(float* out, const Int8Acts& a, const int8_t* w, const float* wscales,
                          int group, int T, int N, int K) {
  int8_blocked<Int8Tile<DotVnni>, 4, 4>(Int8Tile<DotVnni>{out, a, w, wscales, group, N, K}, T, N,
                                        K);
}

}  // namespace tpinfer::cpu

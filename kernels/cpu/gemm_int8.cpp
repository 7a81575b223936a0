// gemm_int8.h: activation quantization, the portable int8 kernel (the reference every SIMD path
// matches bit for bit) and the run-time choice of path.
#include "cpu/gemm_int8.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

namespace tpinfer::cpu {

const char* int8_path_name(Int8Path p) {
  switch (p) {
    case Int8Path::portable:
      return "portable";
    case Int8Path::avx2:
      return "avx2";
    case Int8Path::avx512vnni:
      return "avx512vnni";
  }
  return "?";
}

bool int8_path_supported(Int8Path p) {
#if defined(__x86_64__) && defined(TPINFER_GEMM_X86)
  __builtin_cpu_init();
  switch (p) {
    case Int8Path::portable:
      return true;
    case Int8Path::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Int8Path::avx512vnni:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return p == Int8Path::portable;
#endif
}

Int8Path int8_path_for(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return Int8Path::portable;
    case Isa::avx2:
      return int8_path_supported(Int8Path::avx2) ? Int8Path::avx2 : Int8Path::portable;
    case Isa::avx512:
    case Isa::avx512bf16:
      if (int8_path_supported(Int8Path::avx512vnni)) return Int8Path::avx512vnni;
      return int8_path_supported(Int8Path::avx2) ? Int8Path::avx2 : Int8Path::portable;
  }
  return Int8Path::portable;
}

void quantize_acts_int8(const float* in, int T, int K, int8_t* q, float* scales) {
  const int Kp = (K + kInt8Pad - 1) / kInt8Pad * kInt8Pad;
  const int nb = Kp / kInt8Block;
  for (int t = 0; t < T; ++t) {
    const float* x = in + int64_t{t} * K;
    int8_t* qt = q + int64_t{t} * Kp;
    for (int b = 0; b < nb; ++b) {
      const int k0 = b * kInt8Block, k1 = std::min(K, k0 + kInt8Block);
      float amax = 0.f;
      for (int k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(x[k]));
      const float s = amax / 127.f;
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      for (int k = k0; k < k1; ++k) {
        const float r = std::nearbyint(x[k] * inv);
        qt[k] = static_cast<int8_t>(std::clamp(r, -127.f, 127.f));
      }
      for (int k = k1; k < k0 + kInt8Block; ++k) qt[k] = 0;
      scales[int64_t{t} * nb + b] = s;
    }
  }
}

void gemm_int8_portable(float* out, const Int8Acts& a, const int8_t* w, const float* wscales,
                        int group, int T, int N, int K) {
  const int nbk = a.Kp / kInt8Block;
  const int ng = (K + group - 1) / group;
  const bool per_row = group >= K;
#pragma omp parallel for schedule(static) if (int64_t{T} * N * K >= (1 << 16))
  for (int n = 0; n < N; ++n) {
    const int8_t* wr = w + int64_t{n} * K;
    for (int t = 0; t < T; ++t) {
      const int8_t* qa = a.q + int64_t{t} * a.Kp;
      float acc[16] = {};
      for (int b = 0; b < nbk; ++b) {
        const float sa = a.scales[int64_t{t} * nbk + b];
        const float s = b * kInt8Block >= K ? 0.f
                        : per_row           ? sa
                                  : sa * wscales[int64_t{n} * ng + b * kInt8Block / group];
        for (int j = 0; j < 8; ++j) {
          int32_t sum = 0;
          for (int e = 0; e < 4; ++e) {
            const int k = b * kInt8Block + 4 * j + e;
            if (k < K) sum += int32_t{wr[k]} * int32_t{qa[k]};
          }
          float& lane = acc[(b & 1) * 8 + j];
          lane = std::fma(static_cast<float>(sum), s, lane);
        }
      }
      float v[8];
      for (int j = 0; j < 8; ++j) v[j] = acc[j] + acc[j + 8];
      const float h = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
      out[int64_t{t} * N + n] = per_row ? h * wscales[n] : h;
    }
  }
}

void gemm_int8(Int8Path path, float* out, const float* in, const int8_t* w, const float* wscales,
               int group, int T, int N, int K) {
  const int Kp = (K + kInt8Pad - 1) / kInt8Pad * kInt8Pad;
  // Reused across calls: a decode step allocates nothing once the largest shape has been seen.
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> s;
  q.resize(static_cast<size_t>(T) * Kp);
  s.resize(static_cast<size_t>(T) * (Kp / kInt8Block));
  quantize_acts_int8(in, T, K, q.data(), s.data());
  const Int8Acts a{q.data(), s.data(), Kp};
  switch (path) {
#if defined(__x86_64__) && defined(TPINFER_GEMM_X86)
    case Int8Path::avx2:
      return gemm_int8_avx2(out, a, w, wscales, group, T, N, K);
    case Int8Path::avx512vnni:
      return gemm_int8_avx512vnni(out, a, w, wscales, group, T, N, K);
#endif
    default:
      return gemm_int8_portable(out, a, w, wscales, group, T, N, K);
  }
}

}  // namespace tpinfer::cpu

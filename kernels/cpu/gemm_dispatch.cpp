// Run-time choice among the paths of gemm.h: what the CPU supports (cpuid through
// __builtin_cpu_supports) and what was compiled (x86-64 only; elsewhere only the portable path).
#include <algorithm>
#include <cstring>
#include <initializer_list>

#include "cpu/cpu_kernels.h"
#include "cpu/gemm.h"

namespace tpinfer::cpu {

namespace {
int g_panel_max_tokens = kPanelMaxTokens;
}  // namespace

int panel_max_tokens() {
  return g_panel_max_tokens;
}

void set_panel_max_tokens(int t) {
  g_panel_max_tokens = std::clamp(t, 0, kPanelMaxTokens);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable:
      return "portable";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512bf16:
      return "avx512bf16";
  }
  return "?";
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) && defined(TPINFER_GEMM_X86)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  switch (isa) {
    case Isa::portable:
      return true;
    case Isa::avx2:
      return avx2;
    case Isa::avx512:
      return avx512;
    case Isa::avx512bf16:
      return avx512 && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return isa == Isa::portable;
#endif
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512bf16, Isa::avx512, Isa::avx2}) {
    if (isa_supported(isa)) return isa;
  }
  return Isa::portable;
}

bool parse_isa(const char* s, Isa* out) {
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512bf16}) {
    if (std::strcmp(s, isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  }
  return false;
}

void gemm_f32(Isa isa, float* out, const float* in, const float* w, int T, int N, int K) {
  switch (isa) {
#if defined(__x86_64__) && defined(TPINFER_GEMM_X86)
    case Isa::avx2:
      return gemm_f32_avx2(out, in, w, T, N, K);
    case Isa::avx512:
    case Isa::avx512bf16:
      return gemm_f32_avx512(out, in, w, T, N, K);
#endif
    default:
      return matmul_f32(out, in, w, T, N, K);
  }
}

void gemm_bf16(Isa isa, float* out, const float* in, const uint16_t* w, int T, int N, int K) {
  switch (isa) {
#if defined(__x86_64__) && defined(TPINFER_GEMM_X86)
    case Isa::avx2:
      return gemm_bf16_avx2(out, in, w, T, N, K);
    case Isa::avx512:
      return gemm_bf16_avx512(out, in, w, T, N, K);
    case Isa::avx512bf16:
      return gemm_bf16_avx512bf16(out, in, w, T, N, K);
#endif
    default:
      return matmul_bf16(out, in, w, T, N, K);
  }
}

}  // namespace tpinfer::cpu

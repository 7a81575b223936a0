// Fast matmul for the CPU backend: out[T, N] = in[T, K] @ w[N, K]^T with f32 activations and f32
// or bf16 weights, one implementation per instruction set, picked at run time from the CPU's
// features (one binary, fast on AVX2-only and AVX-512 CPUs). Decode and small batches (T up to
// 8 on AVX-512, 4 on AVX2) stream each weight once for all tokens from one contiguous range of
// rows per thread; larger T runs cache-blocked over N and register-tiled (4 tokens x 4 rows).
//
// Every output element is reduced in the same order whatever the batch size and tile it falls
// in (vector lanes over K, masked tail, one fixed horizontal sum), so each path is batch
// invariant: a row of a batch is bitwise the row computed alone. Different paths round
// differently (8 vs 16 lanes, FMA, bf16 activations), so results differ between CPUs; the
// portable path (cpu_kernels.h matmul_*) is the same on every CPU.
#pragma once

#include <cstdint>

namespace tpinfer::cpu {

enum class Isa {
  portable,    // the plain kernel of cpu_kernels.cpp: same bits on every x86-64 CPU
  avx2,        // AVX2 + FMA, 8 lanes
  avx512,      // AVX-512F/BW/VL + FMA, 16 lanes, f32 activations
  avx512bf16,  // bf16 weights: activations rounded to bf16, vdpbf16ps (f32 weights: avx512)
};

const char* isa_name(Isa isa);
// True when this CPU (and this build) can run the path.
bool isa_supported(Isa isa);
// The fastest supported path.
Isa best_isa();
// Parses "portable", "avx2", "avx512", "avx512bf16" (false on anything else).
bool parse_isa(const char* s, Isa* out);

// Up to this many tokens (and the path's own limit: 8 on AVX-512, 4 on AVX2) the matmul streams
// each weight row once for all tokens (the panel of gemm_blocking.h: decode and small batches);
// above, it runs the cache-blocked GEMM (prefill). Both give the same bits. The setter is for
// benchmarks (clamped to [0, kPanelMaxTokens]).
constexpr int kPanelMaxTokens = 8;
int panel_max_tokens();
void set_panel_max_tokens(int t);

// The matmuls on a chosen path (callers check isa_supported first).
void gemm_f32(Isa isa, float* out, const float* in, const float* w, int T, int N, int K);
void gemm_bf16(Isa isa, float* out, const float* in, const uint16_t* w, int T, int N, int K);

// Per-ISA entry points (gemm_avx2.cpp, gemm_avx512.cpp; each file is compiled for its ISA).
void gemm_f32_avx2(float* out, const float* in, const float* w, int T, int N, int K);
void gemm_bf16_avx2(float* out, const float* in, const uint16_t* w, int T, int N, int K);
void gemm_f32_avx512(float* out, const float* in, const float* w, int T, int N, int K);
void gemm_bf16_avx512(float* out, const float* in, const uint16_t* w, int T, int N, int K);
void gemm_bf16_avx512bf16(float* out, const float* in, const uint16_t* w, int T, int N, int K);

}  // namespace tpinfer::cpu

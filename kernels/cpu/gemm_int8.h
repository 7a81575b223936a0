// int8-weight matmul for the CPU backend: out[T, N] = in[T, K] @ dequant(w)[N, K]^T with f32
// activations and symmetric int8 weights (f32 scales per output row and group of `group` input
// columns; group is a multiple of 32, or K for one scale per row).
//
// Each token's activations are quantized on the fly to int8 in blocks of 32 (scale = max|x| / 127,
// round to nearest even; K padded with zero blocks to a multiple of 64), then every block is an
// exact integer dot product (VNNI vpdpbusd on AVX512-VNNI, maddubs + madd on AVX2, plain int
// math in the portable path: the same integers). The float part is one fixed order too: 16
// lanes, lane (b % 2) * 8 + j accumulates block b's integer sum of elements 32b+4j..32b+4j+3 as
// acc = fma(float(sum), s_b, acc) over b in order, with s_b = sa_b * sw_g (blocks) or sa_b (one
// group per row: the row's scale multiplies the result instead), 0 for a padding block; then
// v_j = acc_j + acc_{j+8} and ((v0+v4)+(v2+v6))+((v1+v5)+(v3+v7)). So every path returns the
// SAME bits, on every CPU, for every batch size and tile: the int8 path is batch invariant and
// deterministic by construction (issue 11, item 4).
#pragma once

#include <cstdint>

#include "cpu/gemm.h"

namespace tpinfer::cpu {

constexpr int kInt8Block = 32;  // activation quantization block (and the finest weight group)
constexpr int kInt8Pad = 64;    // activations are padded to a multiple of this (two blocks)

enum class Int8Path { portable, avx2, avx512vnni };

const char* int8_path_name(Int8Path p);
bool int8_path_supported(Int8Path p);
// The int8 path that goes with a float matmul path: portable -> portable, avx2 -> avx2,
// avx512 / avx512bf16 -> avx512vnni when the CPU has AVX512-VNNI, else avx2.
Int8Path int8_path_for(Isa isa);

// Activations of T tokens, quantized per token in blocks of 32 (K padded with zeros to a
// multiple of 64): q [T, Kp] int8, scales [T, Kp / 32].
struct Int8Acts {
  const int8_t* q = nullptr;
  const float* scales = nullptr;
  int Kp = 0;
};
// q must hold T * round_up(K, 64) bytes, scales T * round_up(K, 64) / 32 floats.
void quantize_acts_int8(const float* in, int T, int K, int8_t* q, float* scales);

// The matmul on a path (callers check int8_path_supported). w: [N, K] int8 rows; wscales:
// [N, ceil(K / group)] f32. Allocates its activation buffer per call (thread-local, reused).
void gemm_int8(Int8Path path, float* out, const float* in, const int8_t* w, const float* wscales,
               int group, int T, int N, int K);

// Per-path kernels on already quantized activations (gemm_int8_*.cpp, each compiled for its ISA).
void gemm_int8_portable(float* out, const Int8Acts& a, const int8_t* w, const float* wscales,
                        int group, int T, int N, int K);
void gemm_int8_avx2(float* out, const Int8Acts& a, const int8_t* w, const float* wscales, int group,
                    int T, int N, int K);
void gemm_int8_avx512vnni(float* out, const Int8Acts& a, const int8_t* w, const float* wscales,
                          int group, int T, int N, int K);

}  // namespace tpinfer::cpu

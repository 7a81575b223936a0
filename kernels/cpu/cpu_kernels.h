// Plain CPU launchers for every op of the transformer: outputs first, then inputs, then sizes.
// fp32 activations, fp32 or bf16 weights, fp32 accumulation. Parallel over rows with OpenMP;
// no allocation, no framework types. Shapes are per rank; T = tokens in the batch.
#pragma once

#include <cstdint>

namespace tpinfer::cpu {

// out[t] = table[ids[t] - vocab_offset] when that row is in [0, rows), else zeros.
void embed(float* out, const float* table, const int32_t* ids, int n_tokens, int rows, int cols,
           int vocab_offset);

// The same from a bf16 table (uint16 storage).
void embed_bf16(float* out, const uint16_t* table, const int32_t* ids, int n_tokens, int rows,
                int cols, int vocab_offset);

// out[r] = in[r] * rsqrt(mean(in[r]^2) + eps) * w, for r < rows.
void rmsnorm(float* out, const float* in, const float* w, int rows, int cols, float eps);

// residual[r] += delta[r]; out[r] = rmsnorm(residual[r]) * w.
void add_rmsnorm(float* out, float* residual, const float* delta, const float* w, int rows,
                 int cols, float eps);

// out[T, N] = in[T, K] @ w[N, K]^T.
void matmul_f32(float* out, const float* in, const float* w, int T, int N, int K);
// The same with bf16 weights (uint16 storage), converted on the fly.
void matmul_bf16(float* out, const float* in, const uint16_t* w, int T, int N, int K);

// In place on q [T, n_q * hd] and k [T, n_kv * hd]: optional per-head RMSNorm with q_norm/k_norm
// [hd] (skipped when null), then rotate-half RoPE at pos[t]: pairs (i, i + hd/2) rotated by
// pos * theta^(-2i/hd).
void qk_norm_rope(float* q, float* k, const float* q_norm, const float* k_norm, const int32_t* pos,
                  int T, int n_q, int n_kv, int hd, const float* inv_freq, float attention_factor,
                  float eps);

// out[t, n] += bias[n] for t < T, n < N.
void add_bias(float* out, const float* bias, int64_t T, int64_t N);

// The paged KV cache: K and V each a pool [n_blocks, block_size, kv_dim] (kv_dim = n_kv * hd).
// Token t's sequence uses row rows[t] of block_tables [n_rows, table_stride]; its position p
// lives in block block_tables[rows[t] * table_stride + p / block_size] at offset
// p % block_size. The kernels read only the entries of blocks a token writes or attends to
// (entries past a sequence's end, or of blocks wholly outside its sliding window, may be -1),
// and trust those to be valid block ids (the engine checks each step's table on the host).

// Writes k[t], v[t] at (rows[t], pos[t]) through the block table.
void kv_append(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* rows,
               const int32_t* pos, const int32_t* block_tables, int table_stride, int T,
               int block_size, int kv_dim);

// out[t, h*hd..] = softmax_j(q[t,h] . K[row_t, j, h/group] * scale) V[row_t, j, h/group] over
// j in [max(0, pos[t] - window + 1), pos[t]] (window <= 0: from 0), K and V read through the
// block table. Tiled online softmax, fp32: each K/V row is read once per tile of consecutive
// tokens x the heads of a GQA group; batch invariant (a token's result does not depend on the
// other tokens of the batch) and independent of the block table (the same bits for any
// placement of the blocks, and as a contiguous cache).
void attention(float* out, const float* q, const float* k_cache, const float* v_cache,
               const int32_t* rows, const int32_t* pos, const int32_t* block_tables,
               int table_stride, int T, int n_heads, int n_kv_heads, int hd, int block_size,
               int window, float scale);

// out[i] = silu(gate[i]) * up[i].
void silu_mul(float* out, const float* gate, const float* up, int64_t n);
// out[t, i] = silu(gate_up[t, i]) * gate_up[t, I + i] for t < rows, i < I (gate_up rows are
// [gate | up], 2I wide).
void silu_mul_fused(float* out, const float* gate_up, int64_t rows, int64_t I);

}  // namespace tpinfer::cpu

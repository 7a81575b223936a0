// Launchers of the CUDA kernels: framework-free (raw device pointers, sizes, a stream), outputs
// first, then inputs, then sizes. Nothing here validates; the CUDA backend checks shapes, dtypes
// and alignment one layer up and then calls these. Every launcher enqueues on `stream` and
// returns at once; launch errors surface through cudaGetLastError() in the caller.
//
// Graph capture: no launcher allocates, synchronizes or reads device data on the host. Token
// positions, rows, block tables and ids are read from device arrays inside the kernels and every
// launch shape depends only on host sizes, so a captured step can be replayed with new positions.
//
// Shapes: T = tokens, hd = head_dim. bf16 storage, fp32 arithmetic everywhere.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace tpinfer::gpu {

using bf16 = __nv_bfloat16;

enum class ElemType { f32, f16, bf16 };

// --- build_info.cu ------------------------------------------------------------------------
// CMAKE_CUDA_ARCHITECTURES of this build, e.g. "90" or "80,90" (for "rebuild for sm_XY" errors).
const char* built_cuda_architectures();

// --- embed.cu -----------------------------------------------------------------------------
// out[t, :] = table[ids[t] - vocab_offset, :] when ids[t] is in [vocab_offset, vocab_offset +
// vocab_rows), zeros otherwise (vocab-parallel embedding). out [T, hidden], table [vocab_rows,
// hidden].
void embed(bf16* out, const bf16* table, const int32_t* ids, int n_tokens, int hidden,
           int vocab_offset, int vocab_rows, cudaStream_t stream);

// --- rmsnorm.cu ---------------------------------------------------------------------------
// out[r] = bf16(weight * bf16(in[r] * rsqrt(mean(in[r]^2) + eps))), the rounding order of
// Hugging Face's LlamaRMSNorm. One block per row. out may alias in.
void rmsnorm(bf16* out, const bf16* in, const bf16* weight, int rows, int cols, float eps,
             cudaStream_t stream);
// residual[r] = bf16(residual[r] + delta[r]); out[r] = rmsnorm(residual[r]) * weight.
void add_rmsnorm(bf16* out, bf16* residual, const bf16* delta, const bf16* weight, int rows,
                 int cols, float eps, cudaStream_t stream);

// --- rope.cu ------------------------------------------------------------------------------
// In place on q [T, n_heads*hd] and k [T, n_kv_heads*hd]: when q_norm/k_norm [hd] are not null,
// a per-head RMSNorm (Qwen3), then rotate-half RoPE at positions[t] with the f32 device table
// inv_freq [hd/2] (any RoPE scaling, precomputed), cos and sin times attention_factor. One warp per
// head (q heads, then kv heads); grid (tokens, heads / warps per block, rounded up). hd even and <=
// 256.
void qk_norm_rope(bf16* q, bf16* k, const bf16* q_norm, const bf16* k_norm,
                  const int32_t* positions, int n_tokens, int n_heads, int n_kv_heads, int head_dim,
                  const float* inv_freq, float attention_factor, float eps, cudaStream_t stream);

// --- bias.cu ------------------------------------------------------------------------------
// out[t, n] += bias[n] (linear layers with biases), sum in fp32, rounded once to bf16.
void add_bias(bf16* out, const bf16* bias, int64_t rows, int64_t cols, cudaStream_t stream);

// --- swiglu.cu ----------------------------------------------------------------------------
// out[i] = silu(gate[i]) * up[i] for i < n.
void silu_mul(bf16* out, const bf16* gate, const bf16* up, int64_t n, cudaStream_t stream);
// The fused gate/up projection: out[t, i] = silu(gate_up[t, i]) * gate_up[t, I + i] (gate_up
// rows [gate | up], 2I wide).
void silu_mul_fused(bf16* out, const bf16* gate_up, int64_t rows, int64_t I, cudaStream_t stream);

// --- the paged KV cache (kv_cache.cu, attention_prefill.cu, attention_decode.cu) -----------
// K and V are each a pool [n_blocks, block_size, kv_width] (kv_width = n_kv_heads * hd). Token t
// belongs to the sequence whose block table is row rows[t] of block_tables [n_rows,
// table_stride]; its position p lives in block block_tables[rows[t] * table_stride + p /
// block_size], offset p % block_size. Kernels read only the entries of blocks a token writes or
// attends to (others may be -1: past a sequence's end, or wholly outside its sliding window).
// A token whose row or position is out of range is skipped (kv_append) or gets zeros
// (attention); an entry outside [0, n_blocks) reads as a block of zeros and is never written.
struct KvPages {
  const int32_t* block_tables = nullptr;  // device int array [n_rows, table_stride]
  int table_stride = 0;
  int n_rows = 0;
  int n_blocks = 0;
  int block_size = 0;  // a power of two
  int max_seq = 0;     // positions are below it
};

// Writes k[t] and v[t] at (rows[t], positions[t]) through the block table.
void kv_append(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v, const int32_t* rows,
               const int32_t* positions, const KvPages& pages, int n_tokens, int kv_width,
               cudaStream_t stream);

// out[t, h*hd:(h+1)*hd] = softmax_j(q[t,h] . K[row_t, j, h/group] * scale) V[row_t, j, h/group]
// over j in [max(0, pos_t - window + 1), pos_t] (window <= 0: no window), group = n_heads /
// n_kv_heads, K and V read through the block table. Reads the KV cache only (append first).
struct AttentionShape {
  int n_tokens = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int sliding_window = 0;
  float scale = 1.0f;
};

// Prefill: flash-attention tiling on bf16 tensor cores (WMMA, sm_80+), 64 queries x 64 keys per
// tile, one block per (query tile, head). Queries of a tile that belong to different sequences
// (rows) are handled one row group after the other, so any batch is correct; it is fast when a
// tile's tokens share one row (a prefill). hd in {64, 128}.
bool attention_prefill_supports(int head_dim);
// Raises the dynamic shared memory limit of the prefill kernels; call once per device before
// any launch (outside graph capture). Returns the CUDA status.
cudaError_t attention_prefill_init();
void attention_prefill(bf16* out, const bf16* q, const bf16* k_cache, const bf16* v_cache,
                       const int32_t* rows, const int32_t* positions, const KvPages& pages,
                       const AttentionShape& s, cudaStream_t stream);

// Decode: flash-decoding. Grid (n_splits, n_kv_heads * head blocks, T); a block handles one
// token, one kv head and its query heads (up to 16 at a time), one split of the key range. The
// number of splits actually used is derived on the device from each token's position (at least
// 64 keys per split), so the launch shape is fixed for a graph while short contexts do not pay
// for empty splits. With n_splits > 1 the partial results go to `workspace` and a second kernel
// combines them. Any hd that is a multiple of 8 and <= 256; any T.
int attention_decode_splits(int n_tokens, int n_heads, int n_kv_heads, int max_seq, int n_sms);
size_t attention_decode_workspace_bytes(int n_tokens, int n_heads, int head_dim, int n_splits);
void attention_decode(bf16* out, float* workspace, const bf16* q, const bf16* k_cache,
                      const bf16* v_cache, const int32_t* rows, const int32_t* positions,
                      const KvPages& pages, const AttentionShape& s, int n_splits,
                      cudaStream_t stream);

// --- gemv.cu ------------------------------------------------------------------------------
// The bandwidth-bound projection for small batches: out[t, n] = sum_k x[t, k] * w[n, k] for
// t < n_tokens <= kGemvMaxTokens. One warp per output row, or gemv_split(n, k, sm_count) warps
// sharing a row along k when n is too small to give every SM ~32 warps; 128-bit streaming loads
// of w (4 in flight per lane), x read through the read-only cache, fp32 accumulation. Needs
// k % 8 == 0 and 16-byte aligned x and w. out is bf16 or f32 (out_f32).
constexpr int kGemvMaxTokens = 8;
int gemv_split(int n, int k, int sm_count);  // 1, 2, 4 or 8
void gemv(void* out, bool out_f32, const bf16* x, const bf16* w, int n_tokens, int n, int k,
          int sm_count, cudaStream_t stream);

// --- gemv_int8.cu -------------------------------------------------------------------------
// int8 weights (scripts/convert_hf.py --dtype int8) for small batches: out[t, n] = sum_k x[t, k]
// * w[n, k] * scales[n * ceil(k / group) + k / group] for t < n_tokens <= kGemvMaxTokens. One
// warp per output row, 128-bit streaming loads of w (16 weights), x bf16 or f32 (x_f32) through
// the read-only cache, fp32 accumulation; out bf16 or f32 (out_f32). That fast kernel needs
// k % 16 == 0, group a multiple of 16 (32 = blocks, k = per channel) and 16-byte aligned x and
// w; other k or group run a plain one-byte-per-lane kernel (odd tensor-parallel slices).
void gemv_int8(void* out, bool out_f32, const void* x, bool x_f32, const int8_t* w,
               const float* scales, int group, int n_tokens, int n, int k, cudaStream_t stream);

// --- logits.cu ----------------------------------------------------------------------------
// Greedy sampling on the device: index[r] = index_offset + argmax_c logits[r, c] (lowest index
// on ties; NaN never wins), value[r] = that maximum. One block per row. value may be null.
void argmax_rows(int32_t* index, float* value, const float* logits, int rows, int cols,
                 int index_offset, cudaStream_t stream);

// --- convert.cu ---------------------------------------------------------------------------
// out[i] = in[i] converted (round to nearest even), i < n.
void convert(void* out, ElemType out_type, const void* in, ElemType in_type, int64_t n,
             cudaStream_t stream);
// out[i, :] = in[rows[i], :] for i < n_out_rows, rows of row_bytes bytes; an index outside
// [0, n_in_rows) gives a zero row.
void gather_rows(void* out, const void* in, const int32_t* rows, int n_out_rows, int n_in_rows,
                 size_t row_bytes, cudaStream_t stream);

// --- bandwidth.cu -------------------------------------------------------------------------
// Reads n16 16-byte words and writes one value per block to sink (so nothing is optimised away):
// the read-only bandwidth probe that bounds a weight-streaming decode step. sink holds
// read_probe_blocks() floats.
int read_probe_blocks();
void read_probe(float* sink, const void* data, size_t n16, cudaStream_t stream);

// --- moe.cu ------------------------------------------------------------------------------
// Mixture of experts. Routing: ids/weights [T, k] from f32 logits [T, E]: softmax in f32, the k
// largest (equal scores: lowest expert index first), divided by their sum when normalize. One
// warp per token, E floats of shared memory.
void moe_route(int32_t* ids, float* weights, const float* logits, int n_tokens, int n_experts,
               int k, bool normalize, cudaStream_t stream);
// out [T, hidden] = sum over the k routed experts of weights * down_e(silu(gate_e x) * up_e x),
// experts stacked as gate/up [E * inter, hidden], down [E * hidden, inter]. One GEMV per (token,
// slot) that reads only the routed expert's rows (the decode path; a prefill reads each expert
// once per routed token). Scratch h [T * k, inter], y [T * k, hidden].
void moe_experts(bf16* out, const bf16* x, const bf16* gate, const bf16* up, const bf16* down,
                 const int32_t* ids, const float* weights, bf16* h, bf16* y, int n_tokens, int k,
                 int hidden, int inter, cudaStream_t stream);
// The same with int8 experts (scripts/convert_hf.py --dtype int8): q stacked as above, f32 scales
// [rows, ceil(cols / group)] (group 32, or cols for one per row), dequantized on the fly as the
// int8 GEMV does (activations stay bf16). Not tuned: one byte per lane and load.
struct Int8Experts {
  const int8_t* q;
  const float* scales;
  int group;
};
void moe_experts_int8(bf16* out, const bf16* x, Int8Experts gate, Int8Experts up, Int8Experts down,
                      const int32_t* ids, const float* weights, bf16* h, bf16* y, int n_tokens,
                      int k, int hidden, int inter, cudaStream_t stream);

}  // namespace tpinfer::gpu

// Flash-decoding attention over the bf16 KV cache, for decode steps (one token per slot) and
// short batches. A block owns one token, one kv head with up to 16 of its query heads (GQA: the
// heads that share a kv head share every K/V load) and one split of the token's key range. Keys
// are processed in chunks of 64: scores (lanes_per_key lanes dot one key with 128-bit loads),
// an online-softmax update per head, then P.V with each thread owning one or two of the hd
// columns for all heads. With several splits, partial (o, m, l) go to a workspace and
// combine_kernel merges them. Keys are read through the block table (kv_pages.cuh): at the start
// of each chunk the block's threads look up the pool row of its 64 keys once, into shared
// memory. Positions, rows and the table come from device memory; the grid depends only on host
// sizes, so the step can be captured once and replayed at any position with any table.
#include <cmath>

#include "attention_split.h"
#include "common.cuh"
#include "kernels.h"
#include "kv_pages.cuh"

namespace tpinfer::gpu {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 64;  // keys per chunk: two per lane in the softmax step
constexpr int kMaxHeads = 16;
constexpr int kMaxDim = 256;
constexpr int kDimsPerThread = kMaxDim / kThreads;
constexpr float kLog2e = 1.4426950408889634f;

struct DecodeArgs {
  bf16* out;            // [T, n_heads * hd] (n_splits == 1)
  float* ws_o;          // [T, n_heads, n_splits, hd] unnormalised partial outputs (n_splits > 1)
  float2* ws_ml;        // [T, n_heads, n_splits] (running max in log2 units, sum of exp2)
  const bf16* q;        // [T, n_heads * hd]
  const bf16* k_cache;  // pool [n_blocks, block_size, n_kv_heads, hd]
  const bf16* v_cache;
  const int32_t* rows;  // [T] block-table row of each token
  const int32_t* positions;
  KvPages pages;
  int n_heads, n_kv_heads, head_dim, window, n_splits, head_blocks;
  int lanes_per_key;  // power of two with 8 * lanes_per_key >= hd, <= 32
  float scale_log2;   // softmax scale * log2(e): scores live in base 2
};

__device__ __forceinline__ KeySplit token_split(const DecodeArgs& a, int row, int pos, int split) {
  if (!paged_token_ok(a.pages, row, pos)) return KeySplit{1, 0, 0};
  return decode_key_split(attention_first_key(pos, a.window), pos, split, a.n_splits);
}

__global__ void __launch_bounds__(kThreads) decode_kernel(const DecodeArgs a) {
  const int split = blockIdx.x;
  const int kv_head = blockIdx.y / a.head_blocks;
  const int head_block = blockIdx.y % a.head_blocks;
  const int t = blockIdx.z;
  const int group = a.n_heads / a.n_kv_heads;
  const int h0 = kv_head * group + head_block * kMaxHeads;
  const int n_h = min(kMaxHeads, group - head_block * kMaxHeads);
  const int D = a.head_dim;
  const int row = a.rows[t];
  const int pos = a.positions[t];
  const KeySplit ks = token_split(a, row, pos, split);
  if (split >= ks.n_active) return;  // this token needs fewer splits: nothing to do

  __shared__ __align__(16) float s_q[kMaxHeads * kMaxDim];
  __shared__ float s_p[kMaxHeads][kChunk];
  __shared__ float s_m[kMaxHeads], s_l[kMaxHeads], s_alpha[kMaxHeads];
  __shared__ long long s_krow[kChunk];  // pool row of each key of the chunk (-1: none)

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const size_t q_base = (static_cast<size_t>(t) * a.n_heads + h0) * D;
  for (int i = tid; i < n_h * D; i += kThreads) {
    s_q[i] = __bfloat162float(a.q[q_base + i]) * a.scale_log2;
  }
  if (tid < n_h) {
    s_m[tid] = -INFINITY;
    s_l[tid] = 0.0f;
  }
  float acc[kDimsPerThread][kMaxHeads];
#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) {
#pragma unroll
    for (int hh = 0; hh < kMaxHeads; ++hh) acc[r][hh] = 0.0f;
  }
  __syncthreads();

  const int lpk = a.lanes_per_key;
  const int keys_per_warp = 32 / lpk;
  const int sub = lane / lpk;
  const int d0 = (lane % lpk) * 8;
  const bool lane_has_dims = d0 < D;
  const size_t kv_stride = static_cast<size_t>(a.n_kv_heads) * D;  // one position
  const bf16* k_base = a.k_cache + static_cast<size_t>(kv_head) * D;
  const bf16* v_base = a.v_cache + static_cast<size_t>(kv_head) * D;
  PagedRow paged;
  if (ks.end > ks.begin) paged = paged_row(a.pages, row);

  for (int c0 = ks.begin; c0 < ks.end; c0 += kChunk) {
    const int nc = min(kChunk, ks.end - c0);
    // The chunk's keys through the table, once (the previous chunk's readers are past the
    // barrier at the end of the loop).
    for (int kk = tid; kk < kChunk; kk += kThreads) {
      s_krow[kk] = kk < nc ? paged.cache_row(c0 + kk) : -1;
    }
    __syncthreads();
    // Scores. kChunk is a multiple of kWarps * keys_per_warp (or of 2 * 32 when one lane holds
    // a whole key), so every lane of a warp runs the same trip count: full-mask shuffles are safe.
    for (int kk = warp * keys_per_warp + sub; kk < kChunk; kk += kWarps * keys_per_warp) {
      const bool key_ok = kk < nc;
      const long long krow = s_krow[kk];  // -1 past nc, or a bad entry: a key of zeros
      float kf[8];
      if (krow >= 0 && lane_has_dims) {
        load8(k_base + static_cast<size_t>(krow) * kv_stride + d0, kf);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) kf[j] = 0.0f;
      }
      for (int hh = 0; hh < n_h; ++hh) {
        float part = 0.0f;
        if (lane_has_dims) {
          const float4* q4 = reinterpret_cast<const float4*>(s_q + hh * D + d0);
          const float4 qa = q4[0];
          const float4 qb = q4[1];
          part = qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] +
                 qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
        }
        for (int off = lpk >> 1; off > 0; off >>= 1) part += __shfl_xor_sync(kFullMask, part, off);
        if (lane % lpk == 0) s_p[hh][kk] = key_ok ? part : -INFINITY;
      }
    }
    __syncthreads();
    // Online softmax, one warp per head. The chunk holds at least one key, so m_new is finite.
    for (int hh = warp; hh < n_h; hh += kWarps) {
      const float v0 = s_p[hh][lane];
      const float v1 = s_p[hh][lane + 32];
      const float m_old = s_m[hh];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(v0, v1)));
      const float p0 = exp2f(v0 - m_new);
      const float p1 = exp2f(v1 - m_new);
      const float sum = warp_sum(p0 + p1);
      s_p[hh][lane] = p0;
      s_p[hh][lane + 32] = p1;
      if (lane == 0) {
        const float alpha = exp2f(m_old - m_new);  // 0 on the first chunk (m_old = -inf)
        s_alpha[hh] = alpha;
        s_l[hh] = s_l[hh] * alpha + sum;
        s_m[hh] = m_new;
      }
    }
    __syncthreads();
    // P.V: this thread's columns, all heads (one V load feeds every head of the group).
#pragma unroll
    for (int r = 0; r < kDimsPerThread; ++r) {
      const int d = tid + r * kThreads;
      if (d < D) {
#pragma unroll
        for (int hh = 0; hh < kMaxHeads; ++hh) {
          if (hh < n_h) acc[r][hh] *= s_alpha[hh];
        }
#pragma unroll 4
        for (int kk = 0; kk < nc; ++kk) {
          const long long vrow = s_krow[kk];
          const float v = vrow >= 0
                              ? __bfloat162float(v_base[static_cast<size_t>(vrow) * kv_stride + d])
                              : 0.0f;
#pragma unroll
          for (int hh = 0; hh < kMaxHeads; ++hh) {
            if (hh < n_h) acc[r][hh] = fmaf(s_p[hh][kk], v, acc[r][hh]);
          }
        }
      }
    }
    __syncthreads();  // s_p and s_alpha are rewritten by the next chunk
  }

#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) {
    const int d = tid + r * kThreads;
    if (d >= D) continue;
#pragma unroll
    for (int hh = 0; hh < kMaxHeads; ++hh) {
      if (hh >= n_h) continue;
      const size_t row = static_cast<size_t>(t) * a.n_heads + h0 + hh;
      if (a.n_splits == 1) {
        const float l = s_l[hh];
        a.out[row * D + d] = __float2bfloat16(l > 0.0f ? acc[r][hh] / l : 0.0f);
      } else {
        a.ws_o[(row * a.n_splits + split) * D + d] = acc[r][hh];
      }
    }
  }
  if (a.n_splits > 1 && tid < n_h) {
    const size_t row = static_cast<size_t>(t) * a.n_heads + h0 + tid;
    a.ws_ml[row * a.n_splits + split] = make_float2(s_m[tid], s_l[tid]);
  }
}

// Merges the splits of one (token, head): out = sum_s o_s 2^(m_s - m) / sum_s l_s 2^(m_s - m).
__global__ void __launch_bounds__(kThreads) combine_kernel(const DecodeArgs a) {
  const int h = blockIdx.x;
  const int t = blockIdx.y;
  const int D = a.head_dim;
  const KeySplit ks = token_split(a, a.rows[t], a.positions[t], 0);
  const int n_active = ks.n_active;  // <= n_splits <= 32
  const size_t row = static_cast<size_t>(t) * a.n_heads + h;
  __shared__ float s_w[32];
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float m_s = -INFINITY, l_s = 0.0f;
    if (lane < n_active) {
      const float2 ml = a.ws_ml[row * a.n_splits + lane];
      m_s = ml.x;
      l_s = ml.y;
    }
    const float m = warp_max(m_s);
    const float w = (m_s == -INFINITY) ? 0.0f : exp2f(m_s - m);  // empty splits weigh nothing
    const float l = warp_sum(l_s * w);
    s_w[lane] = l > 0.0f ? w / l : 0.0f;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < n_active; ++s) o = fmaf(a.ws_o[(row * a.n_splits + s) * D + d], s_w[s], o);
    a.out[row * D + d] = __float2bfloat16(o);
  }
}

}  // namespace

int attention_decode_splits(int n_tokens, int n_heads, int n_kv_heads, int max_seq, int n_sms) {
  const int group = n_heads / n_kv_heads;
  const long long blocks =
      static_cast<long long>(n_tokens) * n_kv_heads * ceil_div(group, kMaxHeads);
  const long long target = 2LL * (n_sms > 0 ? n_sms : 1);  // two waves of blocks
  if (blocks <= 0 || blocks >= target) return 1;
  long long splits = ceil_div(target, blocks);
  if (splits > kDecodeMaxSplits) splits = kDecodeMaxSplits;
  const long long useful = ceil_div(max_seq, kDecodeMinKeysPerSplit);
  if (splits > useful) splits = useful;
  return static_cast<int>(splits < 1 ? 1 : splits);
}

size_t attention_decode_workspace_bytes(int n_tokens, int n_heads, int head_dim, int n_splits) {
  if (n_splits <= 1) return 0;
  const size_t rows = static_cast<size_t>(n_tokens) * n_heads * n_splits;
  return rows * head_dim * sizeof(float) + rows * sizeof(float2);
}

void attention_decode(bf16* out, float* workspace, const bf16* q, const bf16* k_cache,
                      const bf16* v_cache, const int32_t* rows, const int32_t* positions,
                      const KvPages& pages, const AttentionShape& s, int n_splits,
                      cudaStream_t stream) {
  if (s.n_tokens <= 0) return;
  DecodeArgs a;
  a.out = out;
  const size_t ws_rows = static_cast<size_t>(s.n_tokens) * s.n_heads * n_splits;
  a.ws_o = workspace;
  // hd % 8 == 0, so the float2 array after ws_rows * hd floats is 8-byte aligned.
  a.ws_ml =
      workspace != nullptr ? reinterpret_cast<float2*>(workspace + ws_rows * s.head_dim) : nullptr;
  a.q = q;
  a.k_cache = k_cache;
  a.v_cache = v_cache;
  a.rows = rows;
  a.positions = positions;
  a.pages = pages;
  a.n_heads = s.n_heads;
  a.n_kv_heads = s.n_kv_heads;
  a.head_dim = s.head_dim;
  a.window = s.sliding_window;
  a.n_splits = n_splits;
  a.head_blocks = static_cast<int>(ceil_div(s.n_heads / s.n_kv_heads, kMaxHeads));
  int lpk = 1;
  while (lpk * 8 < s.head_dim) lpk *= 2;
  a.lanes_per_key = lpk;
  a.scale_log2 = s.scale * kLog2e;
  const dim3 grid(n_splits, s.n_kv_heads * a.head_blocks, s.n_tokens);
  decode_kernel<<<grid, kThreads, 0, stream>>>(a);
  if (n_splits > 1) {
    combine_kernel<<<dim3(s.n_heads, s.n_tokens), kThreads, 0, stream>>>(a);
  }
}

}  // namespace tpinfer::gpu

// Flash-attention style prefill on bf16 tensor cores (WMMA 16x16x16, fp32 accumulation). A block
// of 4 warps owns 64 query tokens of one head; it walks 64-key tiles of the KV cache from the
// first key any of its tokens may see to the last, masking per token (causal + sliding window,
// from device positions). Each warp owns 16 query rows end to end: S = Q K^T for its strip,
// the online softmax of its rows (two lanes per row), O += P V for its strip; only the K/V
// tile loads need the whole block. O stays in fp32 shared memory so the softmax rescale is a
// plain per-row multiply. Tokens of a tile that belong to different sequences (block-table rows)
// are processed one row group after another (rows outside the group see only masked keys, which
// leaves them as they were), so any batch is correct and a real prefill needs one pass. K/V
// tiles are gathered through the group's block-table row (kv_pages.cuh): the 64 keys' pool rows
// are looked up once per tile, into shared memory.
#include <mma.h>

#include <climits>
#include <cmath>

#include "attention_split.h"
#include "common.cuh"
#include "kernels.h"
#include "kv_pages.cuh"

namespace tpinfer::gpu {
namespace {

constexpr int kBM = 64;  // query rows per block
constexpr int kBN = 64;  // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// Dynamic shared memory layout; padded rows keep WMMA loads off a single bank group. Every
// region and every 16x16 fragment start is 32-byte aligned, as WMMA requires.
template <int D>
struct Layout {
  static constexpr int kLdQ = D + 8;    // bf16
  static constexpr int kLdKV = D + 8;   // bf16
  static constexpr int kLdS = kBN + 4;  // f32
  static constexpr int kLdP = kBN + 8;  // bf16
  static constexpr int kLdO = D + 4;    // f32
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + sizeof(bf16) * kBM * kLdQ;
  static constexpr size_t kV = kK + sizeof(bf16) * kBN * kLdKV;
  static constexpr size_t kS = kV + sizeof(bf16) * kBN * kLdKV;
  static constexpr size_t kP = kS + sizeof(float) * kBM * kLdS;
  static constexpr size_t kO = kP + sizeof(bf16) * kBM * kLdP;
  static constexpr size_t kBytes = kO + sizeof(float) * kBM * kLdO;
  static_assert(kK % 32 == 0 && kV % 32 == 0 && kS % 32 == 0 && kP % 32 == 0 && kO % 32 == 0,
                "WMMA needs 32-byte aligned tiles");
  static_assert(kLdQ % 8 == 0 && kLdP % 8 == 0 && kLdS % 4 == 0 && kLdO % 4 == 0,
                "WMMA leading dimensions");
};

struct PrefillArgs {
  bf16* out;            // [T, n_heads * hd]
  const bf16* q;        // [T, n_heads * hd]
  const bf16* k_cache;  // pool [n_blocks, block_size, n_kv_heads, hd]
  const bf16* v_cache;
  const int32_t* rows;  // [T] block-table row of each token
  const int32_t* positions;
  KvPages pages;
  int n_tokens, n_heads, n_kv_heads, window;
  float scale_log2;
};

template <int D>
__global__ void __launch_bounds__(kThreads) prefill_kernel(const PrefillArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // bf16 WMMA needs sm_80; the backend refuses older devices
#else
  using namespace nvcuda;
  using L = Layout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem + L::kQ);
  bf16* sK = reinterpret_cast<bf16*>(smem + L::kK);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::kV);
  float* sS = reinterpret_cast<float*>(smem + L::kS);
  bf16* sP = reinterpret_cast<bf16*>(smem + L::kP);
  float* sO = reinterpret_cast<float*>(smem + L::kO);
  __shared__ int s_pos[kBM], s_lo[kBM], s_slot[kBM], s_pending[kBM], s_active[kBM];
  __shared__ int s_cur_slot, s_kmin, s_kmax;
  __shared__ long long s_krow[kBN];  // pool row of each key of the tile (-1: a key of zeros)

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int h = blockIdx.y;
  const int kv_head = h / (a.n_heads / a.n_kv_heads);
  const int q0 = blockIdx.x * kBM;
  const size_t q_stride = static_cast<size_t>(a.n_heads) * D;
  const size_t kv_stride = static_cast<size_t>(a.n_kv_heads) * D;
  constexpr int kVecPerRow = D / 8;

  for (int r = tid; r < kBM; r += kThreads) {
    const int t = q0 + r;
    int pos = -1, slot = -1;
    bool ok = false;
    if (t < a.n_tokens) {
      pos = a.positions[t];
      slot = a.rows[t];
      ok = paged_token_ok(a.pages, slot, pos);
    }
    s_pos[r] = pos;
    s_lo[r] = ok ? attention_first_key(pos, a.window) : 0;
    s_slot[r] = slot;
    s_pending[r] = ok ? 1 : 0;
    s_active[r] = 0;
  }
  for (int i = tid; i < kBM * kVecPerRow; i += kThreads) {
    const int r = i / kVecPerRow;
    const int c = (i % kVecPerRow) * 8;
    const int t = q0 + r;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (t < a.n_tokens) v = *reinterpret_cast<const uint4*>(a.q + t * q_stride + h * D + c);
    *reinterpret_cast<uint4*>(sQ + r * L::kLdQ + c) = v;
  }
  for (int i = tid; i < kBM * D; i += kThreads) sO[(i / D) * L::kLdO + i % D] = 0.0f;
  __syncthreads();

  // This warp's Q strip stays in registers for the whole kernel.
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> q_frag[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wmma::load_matrix_sync(q_frag[kk], sQ + warp * 16 * L::kLdQ + kk * 16, L::kLdQ);
  }

  // Softmax state of one row, kept identical in the two lanes that own it. The row's f32 rows in
  // sS and sO are 4 banks apart (kLdS, kLdO = 4 mod 32 words), so lanes walking contiguous
  // halves would meet 4 to a bank; instead lane `half` takes the columns of its parity, rotated
  // by 2 for the warp's rows 8-15: the 32 lanes then touch 32 different banks at every step
  // (bank = 4 * row + 2 * (row / 8) + half + 2 * step, mod 32).
  const int my_row = warp * 16 + (lane >> 1);
  const int half = lane & 1;
  const int rotate = 2 * ((lane >> 1) >> 3);
  // Column of step i in a row of n columns (n a power of two, at least 32).
  auto lane_column = [&](int i, int n) { return (2 * i + half + rotate) & (n - 1); };
  float m_i = -INFINITY;
  float l_i = 0.0f;

  for (;;) {
    __syncthreads();
    if (tid == 0) {  // next slot group: the pending rows that share the first pending row's slot
      int cur = -1, kmin = INT_MAX, kmax = -1;
      for (int r = 0; r < kBM; ++r) {
        s_active[r] = 0;
        if (!s_pending[r]) continue;
        if (cur < 0) cur = s_slot[r];
        if (s_slot[r] != cur) continue;
        s_active[r] = 1;
        s_pending[r] = 0;
        kmin = min(kmin, s_lo[r]);
        kmax = max(kmax, s_pos[r]);
      }
      s_cur_slot = cur;
      s_kmin = kmin;
      s_kmax = kmax;
    }
    __syncthreads();
    const int cur = s_cur_slot;
    if (cur < 0) break;
    const int kmin = s_kmin;
    const int kmax = s_kmax;
    const bool row_active = s_active[my_row] != 0;
    const int row_pos = s_pos[my_row];
    const int row_lo = s_lo[my_row];
    const size_t head_off = static_cast<size_t>(kv_head) * D;
    const PagedRow paged = paged_row(a.pages, cur);

    for (int k0 = (kmin / kBN) * kBN; k0 <= kmax; k0 += kBN) {
      // The tile's keys through the table (keys outside [kmin, kmax] are not looked up: their
      // blocks may be out of the window, -1). The previous tile's readers are past the barrier
      // at the end of the loop.
      for (int c = tid; c < kBN; c += kThreads) {
        const int j = k0 + c;
        s_krow[c] = j >= kmin && j <= kmax ? paged.cache_row(j) : -1;
      }
      __syncthreads();
      // K/V tile; keys outside [kmin, kmax] are zeros so that 0 * garbage never reaches O.
      for (int i = tid; i < kBN * kVecPerRow; i += kThreads) {
        const int c = i / kVecPerRow;
        const int d = (i % kVecPerRow) * 8;
        const long long krow = s_krow[c];
        uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
        if (krow >= 0) {
          const size_t off = static_cast<size_t>(krow) * kv_stride + head_off + d;
          kv = *reinterpret_cast<const uint4*>(a.k_cache + off);
          vv = *reinterpret_cast<const uint4*>(a.v_cache + off);
        }
        *reinterpret_cast<uint4*>(sK + c * L::kLdKV + d) = kv;
        *reinterpret_cast<uint4*>(sV + c * L::kLdKV + d) = vv;
      }
      __syncthreads();

      {  // S strip = Q strip . K tile^T (K rows read as a column-major B)
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b_frag;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c_frag;
#pragma unroll
        for (int cn = 0; cn < kBN / 16; ++cn) {
          wmma::fill_fragment(c_frag, 0.0f);
#pragma unroll
          for (int kk = 0; kk < D / 16; ++kk) {
            wmma::load_matrix_sync(b_frag, sK + cn * 16 * L::kLdKV + kk * 16, L::kLdKV);
            wmma::mma_sync(c_frag, q_frag[kk], b_frag, c_frag);
          }
          wmma::store_matrix_sync(sS + warp * 16 * L::kLdS + cn * 16, c_frag, L::kLdS,
                                  wmma::mem_row_major);
        }
      }
      __syncwarp();

      {  // online softmax of my row; this lane takes the columns of parity `half`
        float* s_row = sS + my_row * L::kLdS;
        bf16* p_row = sP + my_row * L::kLdP;
        float mx = -INFINITY;
#pragma unroll 8
        for (int c = 0; c < kBN / 2; ++c) {
          const int col = lane_column(c, kBN);
          const int j = k0 + col;
          const bool ok = row_active && j >= row_lo && j <= row_pos;
          const float s = ok ? s_row[col] * a.scale_log2 : -INFINITY;
          s_row[col] = s;
          mx = fmaxf(mx, s);
        }
        mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
        const float m_new = fmaxf(m_i, mx);
        float alpha = 1.0f;
        float sum = 0.0f;
        if (m_new == -INFINITY) {  // nothing visible yet: the row stays all zero
#pragma unroll 8
          for (int c = 0; c < kBN / 2; ++c) p_row[lane_column(c, kBN)] = __float2bfloat16(0.0f);
        } else {
          alpha = exp2f(m_i - m_new);
#pragma unroll 8
          for (int c = 0; c < kBN / 2; ++c) {
            const int col = lane_column(c, kBN);
            const float p = exp2f(s_row[col] - m_new);
            sum += p;
            p_row[col] = __float2bfloat16(p);
          }
        }
        sum += __shfl_xor_sync(kFullMask, sum, 1);
        l_i = l_i * alpha + sum;
        m_i = m_new;
        float* o_row = sO + my_row * L::kLdO;
#pragma unroll 8
        for (int d = 0; d < D / 2; ++d) o_row[lane_column(d, D)] *= alpha;
      }
      __syncwarp();

      {  // O strip += P strip . V tile
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> v_frag;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
          float* o_tile = sO + warp * 16 * L::kLdO + dn * 16;
          wmma::load_matrix_sync(o_frag, o_tile, L::kLdO, wmma::mem_row_major);
#pragma unroll
          for (int kk = 0; kk < kBN / 16; ++kk) {
            wmma::load_matrix_sync(p_frag, sP + warp * 16 * L::kLdP + kk * 16, L::kLdP);
            wmma::load_matrix_sync(v_frag, sV + kk * 16 * L::kLdKV + dn * 16, L::kLdKV);
            wmma::mma_sync(o_frag, p_frag, v_frag, o_frag);
          }
          wmma::store_matrix_sync(o_tile, o_frag, L::kLdO, wmma::mem_row_major);
        }
      }
      __syncthreads();  // the next tile overwrites sK / sV
    }
  }

  const int t = q0 + my_row;
  if (t < a.n_tokens) {
    const float inv = l_i > 0.0f ? 1.0f / l_i : 0.0f;
    const float* o_row = sO + my_row * L::kLdO + half * (D / 2);
    bf16* dst = a.out + t * q_stride + h * D + half * (D / 2);
    for (int d = 0; d < D / 2; ++d) dst[d] = __float2bfloat16(o_row[d] * inv);
  }
#endif
}

template <int D>
void launch(const PrefillArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(a.n_tokens, kBM)), a.n_heads);
  prefill_kernel<D><<<grid, kThreads, Layout<D>::kBytes, stream>>>(a);
}

}  // namespace

bool attention_prefill_supports(int head_dim) {
  return head_dim == 64 || head_dim == 128;
}

cudaError_t attention_prefill_init() {
  cudaError_t e =
      cudaFuncSetAttribute(prefill_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(Layout<64>::kBytes));
  if (e != cudaSuccess) return e;
  return cudaFuncSetAttribute(prefill_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(Layout<128>::kBytes));
}

void attention_prefill(bf16* out, const bf16* q, const bf16* k_cache, const bf16* v_cache,
                       const int32_t* rows, const int32_t* positions, const KvPages& pages,
                       const AttentionShape& s, cudaStream_t stream) {
  if (s.n_tokens <= 0) return;
  PrefillArgs a;
  a.out = out;
  a.q = q;
  a.k_cache = k_cache;
  a.v_cache = v_cache;
  a.rows = rows;
  a.positions = positions;
  a.pages = pages;
  a.n_tokens = s.n_tokens;
  a.n_heads = s.n_heads;
  a.n_kv_heads = s.n_kv_heads;
  a.window = s.sliding_window;
  a.scale_log2 = s.scale * kLog2e;
  if (s.head_dim == 64) {
    launch<64>(a, stream);
  } else if (s.head_dim == 128) {
    launch<128>(a, stream);
  }
}

}  // namespace tpinfer::gpu

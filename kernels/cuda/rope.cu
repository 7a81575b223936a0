// Qwen3's per-head q/k RMSNorm fused with rotate-half RoPE, in place. Grid (T, head groups of
// 4): one warp per head so a single decode token still spreads over several SMs. Each lane owns
// up to 4 rotation pairs (i, i + hd/2) and computes their cos/sin once for all heads of its warp.
// The frequencies come precomputed (inv_freq, f32, hd/2: the same table the CPU backend uses,
// from src/model/rope.cpp), so every RoPE scaling kind is one kernel; cos and sin are multiplied
// by the attention factor (yarn, longrope) as transformers does.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxPairsPerLane = 4;  // hd / 2 <= 128

__global__ void qk_norm_rope_kernel(bf16* q, bf16* k, const bf16* __restrict__ q_norm,
                                    const bf16* __restrict__ k_norm,
                                    const int32_t* __restrict__ positions,
                                    const float* __restrict__ inv_freq, float attention_factor,
                                    int n_heads, int n_kv_heads, int head_dim, float eps) {
  const int t = blockIdx.x;
  const int lane = threadIdx.x & 31;
  const int head = blockIdx.y * kWarpsPerBlock + (threadIdx.x >> 5);
  if (head >= n_heads + n_kv_heads) return;  // whole warps; no block barrier below
  const int half = head_dim / 2;
  // Hugging Face: angle = float(pos) * inv_freq in fp32; cos, sin times attention_scaling.
  const float pos = static_cast<float>(positions[t]);
  float cs[kMaxPairsPerLane], sn[kMaxPairsPerLane];
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int i = lane + 32 * j;
    cs[j] = 1.0f;
    sn[j] = 0.0f;
    if (i < half) {
      sincosf(pos * inv_freq[i], &sn[j], &cs[j]);
      sn[j] *= attention_factor;
      cs[j] *= attention_factor;
    }
  }
  const bool is_q = head < n_heads;
  bf16* x = is_q ? q + (static_cast<size_t>(t) * n_heads + head) * head_dim
                 : k + (static_cast<size_t>(t) * n_kv_heads + (head - n_heads)) * head_dim;
  const bf16* norm = is_q ? q_norm : k_norm;
  float x1[kMaxPairsPerLane], x2[kMaxPairsPerLane];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int i = lane + 32 * j;
    x1[j] = 0.0f;
    x2[j] = 0.0f;
    if (i < half) {
      x1[j] = __bfloat162float(x[i]);
      x2[j] = __bfloat162float(x[i + half]);
      ss += x1[j] * x1[j] + x2[j] * x2[j];
    }
  }
  if (norm != nullptr) {  // uniform over the warp
    const float inv = rsqrtf(warp_sum(ss) / static_cast<float>(head_dim) + eps);
#pragma unroll
    for (int j = 0; j < kMaxPairsPerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < half) {
        // The norm's output is a bf16 tensor in the reference, and RoPE starts from it.
        x1[j] = round_bf16(__bfloat162float(norm[i]) * round_bf16(x1[j] * inv));
        x2[j] = round_bf16(__bfloat162float(norm[i + half]) * round_bf16(x2[j] * inv));
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i < half) {
      x[i] = __float2bfloat16(x1[j] * cs[j] - x2[j] * sn[j]);
      x[i + half] = __float2bfloat16(x2[j] * cs[j] + x1[j] * sn[j]);
    }
  }
}

}  // namespace

void qk_norm_rope(bf16* q, bf16* k, const bf16* q_norm, const bf16* k_norm,
                  const int32_t* positions, int n_tokens, int n_heads, int n_kv_heads, int head_dim,
                  const float* inv_freq, float attention_factor, float eps, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const dim3 grid(n_tokens, static_cast<unsigned>(ceil_div(n_heads + n_kv_heads, kWarpsPerBlock)));
  qk_norm_rope_kernel<<<grid, kWarpsPerBlock * 32, 0, stream>>>(q, k, q_norm, k_norm, positions,
                                                                inv_freq, attention_factor, n_heads,
                                                                n_kv_heads, head_dim, eps);
}

}  // namespace tpinfer::gpu

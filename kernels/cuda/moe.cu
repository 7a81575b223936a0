// Mixture-of-experts kernels: routing (softmax, top-k, renormalise), the experts as per-(token,
// slot) GEMVs that read only the routed experts' weights (bf16, or int8 with per-row scales), and
// the weighted sum. Every launch
// shape depends on host sizes only and expert ids are read on the device, so a decode step with
// an MoE layer is graph-capturable.
#include "common.cuh"
#include "kernels.h"

namespace tpinfer::gpu {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp per output row

// One warp per token: probabilities in shared memory, k rounds of arg-max (equal scores: the
// lowest expert index first).
__global__ void moe_route_kernel(int32_t* ids, float* weights, const float* __restrict__ logits,
                                 int E, int k, bool normalize) {
  extern __shared__ float p[];
  const int t = blockIdx.x, lane = threadIdx.x;
  const float* x = logits + static_cast<int64_t>(t) * E;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) mx = fmaxf(mx, x[e]);
  mx = warp_max(mx);
  float sum = 0.0f;
  for (int e = lane; e < E; e += 32) {
    p[e] = __expf(x[e] - mx);
    sum += p[e];
  }
  sum = warp_sum(sum);
  __syncwarp();
  const float inv = 1.0f / sum;
  float top_sum = 0.0f;
  for (int j = 0; j < k; ++j) {
    float best = -1.0f;
    int best_e = E;
    for (int e = lane; e < E; e += 32) {
      if (p[e] > best) {  // strictly greater: the lowest index wins a tie within a lane
        best = p[e];
        best_e = e;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(kFullMask, best, o);
      const int oe = __shfl_xor_sync(kFullMask, best_e, o);
      if (ob > best || (ob == best && oe < best_e)) {
        best = ob;
        best_e = oe;
      }
    }
    const float v = best * inv;
    top_sum += v;
    if (lane == 0) {
      ids[t * k + j] = best_e;
      weights[t * k + j] = v;
      p[best_e] = -2.0f;  // taken
    }
    __syncwarp();
  }
  if (normalize && lane < k) weights[t * k + lane] /= top_sum;
}

// Expert weight rows as floats: bf16, or int8 times the row's scale for the column's group (the
// int8 GEMV's arithmetic: activations stay bf16, the weights are dequantized on the fly).
struct Bf16Rows {
  const bf16* w;
  int cols;
  __device__ float operator()(int64_t row, int c) const {
    return __bfloat162float(w[row * cols + c]);
  }
};
struct Int8Rows {
  const int8_t* w;
  const float* scales;
  int cols, group, n_groups;
  __device__ float operator()(int64_t row, int c) const {
    return static_cast<float>(w[row * cols + c]) * scales[row * n_groups + c / group];
  }
};

// h[r, i] = bf16(silu(bf16(gate_e[i] . x)) * bf16(up_e[i] . x)) for routed row r = t * k + j,
// e = ids[r]: the dense path's matmul -> bf16 -> silu_mul rounding.
template <typename Rows>
__global__ void moe_gate_up_kernel(bf16* h, const bf16* __restrict__ x, Rows gate, Rows up,
                                   const int32_t* __restrict__ ids, int k, int H, int I) {
  const int r = blockIdx.y;
  const int i = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (i >= I) return;
  const int64_t row = static_cast<int64_t>(ids[r]) * I + i;
  const bf16* xr = x + static_cast<int64_t>(r / k) * H;
  float sg = 0.0f, su = 0.0f;
  for (int c = lane; c < H; c += 32) {
    const float xv = __bfloat162float(xr[c]);
    sg += gate(row, c) * xv;
    su += up(row, c) * xv;
  }
  sg = round_bf16(warp_sum(sg));
  su = round_bf16(warp_sum(su));
  if (lane == 0)
    h[static_cast<int64_t>(r) * I + i] = __float2bfloat16(sg / (1.0f + __expf(-sg)) * su);
}

// y[r, c] = bf16(down_e[c] . h[r]).
template <typename Rows>
__global__ void moe_down_kernel(bf16* y, const bf16* __restrict__ h, Rows down,
                                const int32_t* __restrict__ ids, int H, int I) {
  const int r = blockIdx.y;
  const int c = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (c >= H) return;
  const int64_t row = static_cast<int64_t>(ids[r]) * H + c;
  const bf16* hr = h + static_cast<int64_t>(r) * I;
  float s = 0.0f;
  for (int i = lane; i < I; i += 32) s += down(row, i) * __bfloat162float(hr[i]);
  s = warp_sum(s);
  if (lane == 0) y[static_cast<int64_t>(r) * H + c] = __float2bfloat16(s);
}

// out[t, c] = the token's k slots in increasing expert index, each bf16(y * w) added to a bf16
// sum from zero (transformers' index_add_ into a bf16 buffer).
__global__ void moe_combine_kernel(bf16* out, const bf16* __restrict__ y,
                                   const float* __restrict__ weights,
                                   const int32_t* __restrict__ ids, int k, int H) {
  const int t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= H) return;
  float acc = 0.0f;
  int prev = -1;
  for (int n = 0; n < k; ++n) {
    // The next slot in expert order: the smallest id above the previous one (ids are distinct).
    int jj = -1, best = 0x7fffffff;
    for (int j = 0; j < k; ++j) {
      const int e = ids[t * k + j];
      if (e > prev && e < best) {
        best = e;
        jj = j;
      }
    }
    prev = best;
    const float v = round_bf16(__bfloat162float(y[(static_cast<int64_t>(t) * k + jj) * H + c]) *
                               weights[t * k + jj]);
    acc = round_bf16(acc + v);
  }
  out[static_cast<int64_t>(t) * H + c] = __float2bfloat16(acc);
}

}  // namespace

void moe_route(int32_t* ids, float* weights, const float* logits, int n_tokens, int n_experts,
               int k, bool normalize, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  moe_route_kernel<<<n_tokens, 32, sizeof(float) * n_experts, stream>>>(ids, weights, logits,
                                                                        n_experts, k, normalize);
}

namespace {

template <typename Rows>
void launch_experts(bf16* out, const bf16* x, Rows gate, Rows up, Rows down, const int32_t* ids,
                    const float* weights, bf16* h, bf16* y, int n_tokens, int k, int hidden,
                    int inter, cudaStream_t stream) {
  if (n_tokens <= 0) return;
  const int rows = n_tokens * k;
  const dim3 block(32 * kRowsPerBlock);
  moe_gate_up_kernel<<<dim3(static_cast<unsigned>(ceil_div(inter, kRowsPerBlock)), rows), block, 0,
                       stream>>>(h, x, gate, up, ids, k, hidden, inter);
  moe_down_kernel<<<dim3(static_cast<unsigned>(ceil_div(hidden, kRowsPerBlock)), rows), block, 0,
                    stream>>>(y, h, down, ids, hidden, inter);
  moe_combine_kernel<<<dim3(static_cast<unsigned>(ceil_div(hidden, 256)), n_tokens), 256, 0,
                       stream>>>(out, y, weights, ids, k, hidden);
}

Int8Rows int8_rows(const Int8Experts& m, int cols) {
  return Int8Rows{m.q, m.scales, cols, m.group, static_cast<int>(ceil_div(cols, m.group))};
}

}  // namespace

void moe_experts(bf16* out, const bf16* x, const bf16* gate, const bf16* up, const bf16* down,
                 const int32_t* ids, const float* weights, bf16* h, bf16* y, int n_tokens, int k,
                 int hidden, int inter, cudaStream_t stream) {
  launch_experts(out, x, Bf16Rows{gate, hidden}, Bf16Rows{up, hidden}, Bf16Rows{down, inter}, ids,
                 weights, h, y, n_tokens, k, hidden, inter, stream);
}

void moe_experts_int8(bf16* out, const bf16* x, Int8Experts gate, Int8Experts up, Int8Experts down,
                      const int32_t* ids, const float* weights, bf16* h, bf16* y, int n_tokens,
                      int k, int hidden, int inter, cudaStream_t stream) {
  launch_experts(out, x, int8_rows(gate, hidden), int8_rows(up, hidden), int8_rows(down, inter),
                 ids, weights, h, y, n_tokens, k, hidden, inter, stream);
}

}  // namespace tpinfer::gpu

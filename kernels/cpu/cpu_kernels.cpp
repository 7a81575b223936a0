#include "cpu/cpu_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace tpinfer::cpu {

namespace {

inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
#pragma omp simd
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = 0.f;
  for (; i < n; ++i) s += a[i] * b[i];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline float bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline void rmsnorm_row(float* out, const float* in, const float* w, int cols, float eps) {
  float ss = 0.f;
  for (int i = 0; i < cols; ++i) ss += in[i] * in[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(cols) + eps);
  for (int i = 0; i < cols; ++i) out[i] = in[i] * inv * w[i];
}

}  // namespace

void embed(float* out, const float* table, const int32_t* ids, int n_tokens, int rows, int cols,
           int vocab_offset) {
#pragma omp parallel for if (n_tokens > 16)
  for (int t = 0; t < n_tokens; ++t) {
    const int r = ids[t] - vocab_offset;
    float* o = out + static_cast<int64_t>(t) * cols;
    if (r >= 0 && r < rows) {
      std::memcpy(o, table + static_cast<int64_t>(r) * cols, sizeof(float) * cols);
    } else {
      std::memset(o, 0, sizeof(float) * cols);
    }
  }
}

void embed_bf16(float* out, const uint16_t* table, const int32_t* ids, int n_tokens, int rows,
                int cols, int vocab_offset) {
#pragma omp parallel for if (n_tokens > 16)
  for (int t = 0; t < n_tokens; ++t) {
    const int r = ids[t] - vocab_offset;
    float* o = out + static_cast<int64_t>(t) * cols;
    const uint16_t* src = table + static_cast<int64_t>(r) * cols;
    for (int c = 0; c < cols; ++c) o[c] = (r >= 0 && r < rows) ? bf16(src[c]) : 0.0f;
  }
}

void rmsnorm(float* out, const float* in, const float* w, int rows, int cols, float eps) {
#pragma omp parallel for if (rows > 4)
  for (int r = 0; r < rows; ++r) {
    rmsnorm_row(out + static_cast<int64_t>(r) * cols, in + static_cast<int64_t>(r) * cols, w, cols,
                eps);
  }
}

void add_rmsnorm(float* out, float* residual, const float* delta, const float* w, int rows,
                 int cols, float eps) {
#pragma omp parallel for if (rows > 4)
  for (int r = 0; r < rows; ++r) {
    float* x = residual + static_cast<int64_t>(r) * cols;
    const float* d = delta + static_cast<int64_t>(r) * cols;
    for (int i = 0; i < cols; ++i) x[i] += d[i];
    rmsnorm_row(out + static_cast<int64_t>(r) * cols, x, w, cols, eps);
  }
}

// Parallel over output features: each thread streams its rows of w once. A row is converted to
// f32 in blocks of 8 and reused for up to 4 tokens (prefill, batched decode); at T = 1 this is a
// bandwidth-bound GEMV. Every token's sum is formed in exactly the order dot() uses (8 lanes, then
// the tail, then the same pairwise reduction), so results do not depend on the batch size: a
// sequence decoded in a batch gets bitwise the logits it gets alone.
// Below this many multiply-adds a fork/join costs more than it saves (tiny models, small heads).
constexpr int64_t kParallelMinWork = 1 << 16;

template <typename W, typename Conv>
static void matmul_rows(float* out, const float* in, const W* w, int T, int N, int K, Conv conv) {
#pragma omp parallel for schedule(static) if (int64_t{T} * N * K >= kParallelMinWork)
  for (int n = 0; n < N; ++n) {
    const W* wr = w + static_cast<int64_t>(n) * K;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
      const float* x[4];
      for (int b = 0; b < 4; ++b) x[b] = in + static_cast<int64_t>(t + b) * K;
      float acc[4][8] = {};
      int i = 0;
      for (; i + 8 <= K; i += 8) {
        float wv[8];
        for (int j = 0; j < 8; ++j) wv[j] = conv(wr[i + j]);
        for (int b = 0; b < 4; ++b) {
#pragma omp simd
          for (int j = 0; j < 8; ++j) acc[b][j] += x[b][i + j] * wv[j];
        }
      }
      for (int b = 0; b < 4; ++b) {
        float s = 0.f;
        for (int r = i; r < K; ++r) s += x[b][r] * conv(wr[r]);
        const float* a = acc[b];
        out[static_cast<int64_t>(t + b) * N + n] =
            s + ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      }
    }
    for (; t < T; ++t) {
      const float* x = in + static_cast<int64_t>(t) * K;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int i = 0;
      for (; i + 8 <= K; i += 8) {
#pragma omp simd
        for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * conv(wr[i + j]);
      }
      float s = 0.f;
      for (int r = i; r < K; ++r) s += x[r] * conv(wr[r]);
      out[static_cast<int64_t>(t) * N + n] =
          s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  }
}

void matmul_f32(float* out, const float* in, const float* w, int T, int N, int K) {
  matmul_rows(out, in, w, T, N, K, [](float v) { return v; });
}

void matmul_bf16(float* out, const float* in, const uint16_t* w, int T, int N, int K) {
  matmul_rows(out, in, w, T, N, K, [](uint16_t v) { return bf16(v); });
}

void qk_norm_rope(float* q, float* k, const float* q_norm, const float* k_norm, const int32_t* pos,
                  int T, int n_q, int n_kv, int hd, const float* inv_freq, float attention_factor,
                  float eps) {
  const int half = hd / 2;
  const int n_all = n_q + n_kv;
#pragma omp parallel for if (T * n_all > 64)
  for (int i = 0; i < T * n_all; ++i) {
    const int t = i / n_all;
    const int h = i % n_all;
    const bool is_q = h < n_q;
    float* v = is_q ? q + (static_cast<int64_t>(t) * n_q + h) * hd
                    : k + (static_cast<int64_t>(t) * n_kv + (h - n_q)) * hd;
    const float* nw = is_q ? q_norm : k_norm;
    if (nw != nullptr) rmsnorm_row(v, v, nw, hd, eps);
    const double p = static_cast<double>(pos[t]);
    for (int j = 0; j < half; ++j) {
      // As HF: angle = float(pos) * inv_freq in fp32, cos/sin times attention_scaling.
      const float angle = static_cast<float>(p) * inv_freq[j];
      const float c = std::cos(angle) * attention_factor;
      const float s = std::sin(angle) * attention_factor;
      const float x0 = v[j], x1 = v[j + half];
      v[j] = x0 * c - x1 * s;
      v[j + half] = x1 * c + x0 * s;
    }
  }
}

void add_bias(float* out, const float* bias, int64_t T, int64_t N) {
#pragma omp parallel for if (T * N > 65536)
  for (int64_t t = 0; t < T; ++t) {
    float* row = out + t * N;
    for (int64_t n = 0; n < N; ++n) row[n] += bias[n];
  }
}

void kv_append(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slots,
               const int32_t* pos, int T, int max_seq, int kv_dim) {
  for (int t = 0; t < T; ++t) {
    const int64_t off = (static_cast<int64_t>(slots[t]) * max_seq + pos[t]) * kv_dim;
    std::memcpy(k_cache + off, k + static_cast<int64_t>(t) * kv_dim, sizeof(float) * kv_dim);
    std::memcpy(v_cache + off, v + static_cast<int64_t>(t) * kv_dim, sizeof(float) * kv_dim);
  }
}

// Work item: one token and a run of `g` heads that share a KV head (the whole GQA group when there
// are enough items for the threads, else one head). Two passes over the window: scores of every
// head against each K row (the row read once for the run), then softmax, then the weighted sum of
// each V row (read once). Each (token, head) is reduced in the same order whatever the run, the
// batch or the thread count: batch invariant.
void attention(float* out, const float* q, const float* k_cache, const float* v_cache,
               const int32_t* slots, const int32_t* pos, int T, int n_heads, int n_kv_heads, int hd,
               int max_seq, int window, float scale) {
  const int group = n_heads / n_kv_heads;
  const int kv_dim = n_kv_heads * hd;
  constexpr int kMaxRun = 16;
  int run = 1;
  for (int g = std::min(group, kMaxRun); g > 1; --g) {
    if (group % g == 0 && int64_t{T} * (n_heads / g) >= 2 * omp_get_max_threads()) {
      run = g;
      break;
    }
  }
  const int runs_per_token = n_heads / run;
  int longest = 1;
  for (int t = 0; t < T; ++t) longest = std::max(longest, pos[t] + 1);
  if (window > 0) longest = std::min(longest, window);
#pragma omp parallel if (T * n_heads > 8)
  {
    std::vector<float> scores(static_cast<size_t>(run) * longest);
    std::vector<float> acc(static_cast<size_t>(run) * hd);
#pragma omp for schedule(dynamic, 1)
    for (int i = 0; i < T * runs_per_token; ++i) {
      const int t = i / runs_per_token;
      const int h0 = (i % runs_per_token) * run;
      const int kvh = h0 / group;
      const float* q0 = q + (static_cast<int64_t>(t) * n_heads + h0) * hd;
      const int64_t base = static_cast<int64_t>(slots[t]) * max_seq * kv_dim + kvh * hd;
      const int end = pos[t];
      const int start = window > 0 ? std::max(0, end - window + 1) : 0;
      const int n = end - start + 1;
      for (int j = 0; j < n; ++j) {
        const float* kr = k_cache + base + static_cast<int64_t>(start + j) * kv_dim;
        for (int g = 0; g < run; ++g) scores[g * n + j] = dot(q0 + g * hd, kr, hd) * scale;
      }
      float inv[kMaxRun];
      for (int g = 0; g < run; ++g) {
        float* sg = scores.data() + g * n;
        float m = -INFINITY;
        for (int j = 0; j < n; ++j) m = std::max(m, sg[j]);
        float l = 0.f;
        for (int j = 0; j < n; ++j) {
          sg[j] = std::exp(sg[j] - m);
          l += sg[j];
        }
        inv[g] = l > 0.f ? 1.0f / l : 0.f;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int j = 0; j < n; ++j) {
        const float* vr = v_cache + base + static_cast<int64_t>(start + j) * kv_dim;
        for (int g = 0; g < run; ++g) {
          const float p = scores[g * n + j];
          float* a = acc.data() + g * hd;
#pragma omp simd
          for (int d = 0; d < hd; ++d) a[d] += p * vr[d];
        }
      }
      for (int g = 0; g < run; ++g) {
        float* o = out + (static_cast<int64_t>(t) * n_heads + h0 + g) * hd;
        for (int d = 0; d < hd; ++d) o[d] = acc[g * hd + d] * inv[g];
      }
    }
  }
}

void silu_mul(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd if (n > 4096)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace tpinfer::cpu

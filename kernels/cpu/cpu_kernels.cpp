#include "cpu/cpu_kernels.h"

#include <omp.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

namespace tpinfer::cpu {

namespace {

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
// bandwidth-bound GEMV. Every token's sum is formed in the same order (8 lanes, then the tail,
// then the same pairwise reduction), so results do not depend on the batch size: a
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

void kv_append(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* rows,
               const int32_t* pos, const int32_t* block_tables, int table_stride, int T,
               int block_size, int kv_dim) {
  for (int t = 0; t < T; ++t) {
    const int32_t block =
        block_tables[static_cast<int64_t>(rows[t]) * table_stride + pos[t] / block_size];
    const int64_t off = (static_cast<int64_t>(block) * block_size + pos[t] % block_size) * kv_dim;
    std::memcpy(k_cache + off, k + static_cast<int64_t>(t) * kv_dim, sizeof(float) * kv_dim);
    std::memcpy(v_cache + off, v + static_cast<int64_t>(t) * kv_dim, sizeof(float) * kv_dim);
  }
}

namespace {

// Keys per block of the tiled attention, and query rows (tokens x heads of a GQA group) per tile.
constexpr int kAttnKeyBlock = 64;
constexpr int kAttnMaxRows = 64;

// exp(x) for x <= 0 (softmax weights; x is clamped to [-87, 88]): 2^n * p(r) with n =
// round(x / ln 2), r = x - n ln 2 in two parts and a degree-6 Taylor polynomial (relative error
// below 2e-7 on [-ln2/2, ln2/2]). Plain IEEE multiplies and adds (no FMA contraction in this
// library), so a lane of a vector loop gives the same bits as the scalar tail: exp(0) is 1
// exactly, below -87 the result is about 1e-38 (a zero weight next to any real one).
inline float exp_le0(float x) {
  x = x > -87.0f ? x : -87.0f;
  x = x < 88.0f ? x : 88.0f;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (plain adds: vectorises, no libm call).
  constexpr float kRound = 12582912.0f;
  const float t = x * 1.44269504f + kRound;
  const float n = t - kRound;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kRound);
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((ni + 127) << 23);
}

#if defined(__AVX512F__)
// Sixteen key rows x sixteen dims transposed in registers: kt[i * kAttnKeyBlock + j] =
// k[j * stride + i] for i, j < 16. Three rounds of two-source permutes (vpermt2ps; GCC 12 warns
// on the unpack and lane-shuffle intrinsics): within each 128-bit lane, pairs of rows, then pairs
// of pairs, so that r[4q + e] holds, in lane l, dim 4l + e of keys 4q .. 4q + 3; then the 4 x 4
// lanes of each dim.
inline void transpose16_keys(float* kt, const float* k, int64_t stride) {
  // Lane i of permutex2var(a, idx, b): a[idx[i]] for idx < 16, else b[idx[i] - 16].
  const __m512i lo_ps = _mm512_setr_epi32(0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
  const __m512i hi_ps =
      _mm512_setr_epi32(2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  const __m512i lo_pd = _mm512_setr_epi32(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
  const __m512i hi_pd =
      _mm512_setr_epi32(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  const __m512i even_lanes =
      _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
  const __m512i odd_lanes =
      _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  __m512 r[16], t[16];
  for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(k + j * stride);
  for (int j = 0; j < 16; j += 2) {
    t[j] = _mm512_permutex2var_ps(r[j], lo_ps, r[j + 1]);
    t[j + 1] = _mm512_permutex2var_ps(r[j], hi_ps, r[j + 1]);
  }
  for (int j = 0; j < 16; j += 4) {
    for (int h = 0; h < 2; ++h) {
      r[j + 2 * h] = _mm512_permutex2var_ps(t[j + h], lo_pd, t[j + 2 + h]);
      r[j + 2 * h + 1] = _mm512_permutex2var_ps(t[j + h], hi_pd, t[j + 2 + h]);
    }
  }
  for (int e = 0; e < 4; ++e) {
    const __m512 a = _mm512_permutex2var_ps(r[e], even_lanes, r[4 + e]);  // lanes 0, 2 of each
    const __m512 b = _mm512_permutex2var_ps(r[8 + e], even_lanes, r[12 + e]);
    const __m512 c = _mm512_permutex2var_ps(r[e], odd_lanes, r[4 + e]);  // lanes 1, 3
    const __m512 d = _mm512_permutex2var_ps(r[8 + e], odd_lanes, r[12 + e]);
    _mm512_storeu_ps(kt + e * kAttnKeyBlock, _mm512_permutex2var_ps(a, even_lanes, b));
    _mm512_storeu_ps(kt + (8 + e) * kAttnKeyBlock, _mm512_permutex2var_ps(a, odd_lanes, b));
    _mm512_storeu_ps(kt + (4 + e) * kAttnKeyBlock, _mm512_permutex2var_ps(c, even_lanes, d));
    _mm512_storeu_ps(kt + (12 + e) * kAttnKeyBlock, _mm512_permutex2var_ps(c, odd_lanes, d));
  }
}
#endif

// kt[d * kAttnKeyBlock + j] = k[j * stride + d] for j < n, d < hd: n consecutive key rows of
// one cache block (row stride `stride`) transposed into the key tile (kt: the tile at its first
// key). Plain copies: the scores read the same values whatever the path. With AVX-512 each 16
// rows go through registers 16 dims at a time; the other rows and dims, a loop per dim.
void gather_keys_t(float* kt, const float* k, int64_t stride, int n, int hd) {
  int j0 = 0;  // rows [0, j0) done for every dim
#if defined(__AVX512F__)
  if (hd % 16 == 0) {
    for (; j0 + 16 <= n; j0 += 16)
      for (int d = 0; d < hd; d += 16)
        transpose16_keys(kt + d * kAttnKeyBlock + j0, k + j0 * stride + d, stride);
  }
#endif
  for (int d = 0; d < hd && j0 < n; ++d) {
    float* dst = kt + d * kAttnKeyBlock;
    const float* src = k + d;
#pragma omp simd
    for (int j = j0; j < n; ++j) dst[j] = src[j * stride];
  }
}

// Per-thread scratch of attention, grown once and kept (no allocation per call once warm).
struct AttnScratch {
  std::vector<float> kt;    // the key tile transposed, [hd][kAttnKeyBlock]
  std::vector<float> vt;    // the value tile, [kAttnKeyBlock][hd]
  std::vector<float> acc;   // [rows][hd]
  std::vector<float> m, l;  // running max and sum per row
  void fit(int rows, int hd) {
    const size_t nk = size_t(hd) * kAttnKeyBlock;
    if (kt.size() < nk) kt.resize(nk), vt.resize(nk);
    if (acc.size() < size_t(rows) * hd) acc.resize(size_t(rows) * hd);
    if (m.size() < size_t(rows)) m.resize(rows), l.resize(rows);
  }
};

// The online-softmax update of one query row whose raw scores q . k for one key tile are in s:
// leaves the weights in s (+0 outside [jlo, jhi]: adding +0 to the fixed-shape sum changes no
// bits), updates the row's max m and sum l and returns the factor corr that rescales the row's
// earlier value sums.
inline float softmax_update(float* s, int jlo, int jhi, float scale, float* m, float* l) {
  constexpr int B = kAttnKeyBlock;
  float mb = -INFINITY;
#pragma omp simd reduction(max : mb)
  for (int j = 0; j < B; ++j) {
    s[j] = j >= jlo && j <= jhi ? s[j] * scale : -INFINITY;
    mb = std::max(mb, s[j]);
  }
  const float m_new = std::max(*m, mb);
  const float corr = *m == -INFINITY ? 0.0f : exp_le0(*m - m_new);
#pragma omp simd
  for (int j = 0; j < B; ++j) {
    const float p = exp_le0(s[j] - m_new);  // out of range: s = -inf, clamped, then dropped
    s[j] = j >= jlo && j <= jhi ? p : 0.0f;
  }
  static_assert(B == 64, "the sum below is written for 64-key blocks");
  float part[16];
  for (int i = 0; i < 16; ++i) part[i] = (s[i] + s[i + 16]) + (s[i + 32] + s[i + 48]);
  for (int w = 8; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) part[i] = part[i] + part[i + w];
  *l = *l * corr + part[0];
  *m = m_new;
  return corr;
}

// The scores of one query row against one key tile (kt: the tile's keys transposed, zero past
// its end), summed over d in ascending order, then softmax_update. HD: the head dim when known
// at compile time, else 0 (hd at run time).
template <int HD>
inline float softmax_block_row(const float* qr, const float* kt, int jlo, int jhi, float scale,
                               int hd_rt, float* m, float* l, float* s) {
  constexpr int B = kAttnKeyBlock;
  const int hd = HD > 0 ? HD : hd_rt;
  for (int j = 0; j < B; ++j) s[j] = 0.0f;
  for (int d = 0; d < hd; ++d) {
    const float qd = qr[d];
    const float* kd = kt + d * B;
#pragma omp simd
    for (int j = 0; j < B; ++j) s[j] += qd * kd[j];
  }
  return softmax_update(s, jlo, jhi, scale, m, l);
}

// acc[d] += p[j] * v[j * stride + d] for j = 0 .. n-1 in ascending order: the value rows of one
// run of consecutive keys in one cache block (stride: the cache's row length kv_dim). Called per
// block in ascending key order, so a row gets the same sums, in the same order, as over the
// copied tile. Not inlined: a loop over one base pointer and a stride vectorises over d; folded
// into a loop over per-block pointers GCC may vectorise across keys with gathers (2-3x slower).
template <int HD>
[[gnu::noinline]] void add_values(float* acc, const float* p, const float* v, int64_t stride, int n,
                                  int hd_rt) {
  if constexpr (HD > 0) {
    float a[HD];
#pragma omp simd
    for (int d = 0; d < HD; ++d) a[d] = acc[d];
    for (int j = 0; j < n; ++j) {
      const float pj = p[j];
      const float* vr = v + j * stride;
#pragma omp simd
      for (int d = 0; d < HD; ++d) a[d] += pj * vr[d];
    }
    for (int d = 0; d < HD; ++d) acc[d] = a[d];
  } else {
    for (int j = 0; j < n; ++j) {
      const float pj = p[j];
      const float* vr = v + j * stride;
#pragma omp simd
      for (int d = 0; d < hd_rt; ++d) acc[d] += pj * vr[d];
    }
  }
}

// One query row against one key tile whose values were copied next to each other (vt,
// [kAttnKeyBlock][hd], rows [jlo, jhi] filled): softmax_block_row, then the earlier sums
// rescaled and the weighted value rows added in ascending key order.
template <int HD>
[[gnu::noinline]] void attend_block_row(const float* qr, const float* kt, const float* vt, int jlo,
                                        int jhi, float scale, int hd_rt, float* m, float* l,
                                        float* acc) {
  const int hd = HD > 0 ? HD : hd_rt;
  float s[kAttnKeyBlock];
  const float corr = softmax_block_row<HD>(qr, kt, jlo, jhi, scale, hd, m, l, s);
  if constexpr (HD > 0) {
    float a[HD];
#pragma omp simd
    for (int d = 0; d < HD; ++d) a[d] = acc[d] * corr;
    for (int j = jlo; j <= jhi; ++j) {
      const float p = s[j];
      const float* vr = vt + j * HD;
#pragma omp simd
      for (int d = 0; d < HD; ++d) a[d] += p * vr[d];
    }
    for (int d = 0; d < HD; ++d) acc[d] = a[d];
  } else {
#pragma omp simd
    for (int d = 0; d < hd; ++d) acc[d] *= corr;
    for (int j = jlo; j <= jhi; ++j) {
      const float p = s[j];
      const float* vr = vt + j * hd;
#pragma omp simd
      for (int d = 0; d < hd; ++d) acc[d] += p * vr[d];
    }
  }
}

// One query row against one key tile whose values stay in the paged cache (decode: a tile of one
// token, where copying V costs more than the rows reused): softmax_block_row, the earlier sums
// rescaled, then per cache block the weighted value rows straight from the cache (add_values over
// the block's base pointer and the cache's row stride kv_dim). Same sums, same order, same bits
// as attend_block_row. vblk[i]: the cache row of tile key jblk[i], the first key of run i
// (runs end at jblk[i + 1]).
template <int HD>
[[gnu::noinline]] void attend_block_row_paged(const float* qr, const float* kt,
                                              const float* const* vblk, const int* jblk, int nblk,
                                              int64_t kv_dim, int jlo, int jhi, float scale,
                                              int hd_rt, float* m, float* l, float* acc) {
  const int hd = HD > 0 ? HD : hd_rt;
  float s[kAttnKeyBlock];
  const float corr = softmax_block_row<HD>(qr, kt, jlo, jhi, scale, hd, m, l, s);
#pragma omp simd
  for (int d = 0; d < hd; ++d) acc[d] *= corr;
  for (int i = 0; i < nblk; ++i) {
    const int a = std::max(jblk[i], jlo), b = std::min(jblk[i + 1] - 1, jhi);
    if (a > b) continue;
    add_values<HD>(acc, s + a, vblk[i] + (a - jblk[i]) * kv_dim, kv_dim, b - a + 1, hd);
  }
}

// Sixteen floats in a vector of the compiler's (GCC/Clang vector extension: lowered to the
// target's registers; element-wise multiplies and adds, not contracted, round as scalar code).
using Vec16 = float __attribute__((vector_size(64)));
// Loads and stores through references: a 64-byte vector passed or returned by value changes the
// calling convention on targets without AVX-512 (GCC's -Wpsabi).
inline void load16(Vec16& v, const float* p) {
  std::memcpy(&v, p, sizeof v);
}
inline void store16(float* p, const Vec16& v) {
  std::memcpy(p, &v, sizeof v);
}

// Decode: the R query rows of one token's GQA group (q: R rows of HD, consecutive) against one
// key tile, values read straight from the paged cache. The same arithmetic per row as
// softmax_block_row then attend_block_row_paged (scores summed over d ascending, then the
// softmax update, the earlier sums rescaled, the value rows added in ascending key order: the
// same bits), but the rows go together: each key and value row is loaded once for the R rows,
// and the scores and sums stay in registers, R x HD / 16 independent chains instead of HD / 16
// (one row's adds wait on each other). vblk, jblk: as for attend_block_row_paged.
template <int HD, int R>
[[gnu::noinline]] void attend_rows_paged(const float* q, const float* kt, const float* const* vblk,
                                         const int* jblk, int nblk, int64_t kv_dim, int jlo,
                                         int jhi, float scale, float* m, float* l, float* acc) {
  static_assert(HD % 16 == 0 && kAttnKeyBlock == 64, "written for 64-key tiles, HD of 16s");
  constexpr int B = kAttnKeyBlock, KV = B / 16, DV = HD / 16;
  Vec16 sc[R][KV] = {};
  for (int d = 0; d < HD; ++d) {
    Vec16 k[KV];
    for (int c = 0; c < KV; ++c) load16(k[c], kt + d * B + 16 * c);
    for (int r = 0; r < R; ++r) {
      const float qd = q[r * HD + d];
      for (int c = 0; c < KV; ++c) sc[r][c] = sc[r][c] + qd * k[c];
    }
  }
  alignas(64) float s[R][B];
  Vec16 a[R][DV];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < KV; ++c) store16(s[r] + 16 * c, sc[r][c]);
    const float corr = softmax_update(s[r], jlo, jhi, scale, m + r, l + r);
    for (int c = 0; c < DV; ++c) {
      load16(a[r][c], acc + r * HD + 16 * c);
      a[r][c] = a[r][c] * corr;
    }
  }
  for (int i = 0; i < nblk; ++i) {
    const int j0 = std::max(jblk[i], jlo), j1 = std::min(jblk[i + 1] - 1, jhi);
    const float* v = vblk[i] + (j0 - jblk[i]) * kv_dim;
    for (int j = j0; j <= j1; ++j, v += kv_dim) {
      Vec16 vv[DV];
      for (int c = 0; c < DV; ++c) load16(vv[c], v + 16 * c);
      for (int r = 0; r < R; ++r) {
        const float p = s[r][j];
        for (int c = 0; c < DV; ++c) a[r][c] = a[r][c] + p * vv[c];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < DV; ++c) store16(acc + r * HD + 16 * c, a[r][c]);
}

// attend_rows_paged for rows [0, n) of a group, at most 4 (HD 64) or 2 (HD 128) at a time: as
// many as the vector registers hold (R x (HD / 16 sums + 4 scores) + HD / 16 values).
template <int HD>
void attend_group_paged(int n, const float* q, const float* kt, const float* const* vblk,
                        const int* jblk, int nblk, int64_t kv_dim, int jlo, int jhi, float scale,
                        float* m, float* l, float* acc) {
  constexpr int kMaxRows = HD <= 64 ? 4 : 2;
  for (int g = 0; g < n;) {
    const int r = std::min(n - g, kMaxRows);
    const float* qg = q + g * HD;
    float* ag = acc + g * HD;
    switch (r) {
      case 1:
        attend_rows_paged<HD, 1>(qg, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, m + g, l + g,
                                 ag);
        break;
      case 2:
        attend_rows_paged<HD, 2>(qg, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, m + g, l + g,
                                 ag);
        break;
      case 3:
        if constexpr (kMaxRows >= 3) {
          attend_rows_paged<HD, 3>(qg, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, m + g, l + g,
                                   ag);
        }
        break;
      default:
        if constexpr (kMaxRows >= 4) {
          attend_rows_paged<HD, 4>(qg, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, m + g, l + g,
                                   ag);
        }
    }
    g += r;
  }
}

}  // namespace

// Tiled (flash-style) attention. A work item is a tile of up to kAttnMaxRows / group consecutive
// batch tokens of one sequence (same block-table row) times one KV head, i.e. all heads of its
// GQA group: each key and value row is gathered once for every query row of the tile. Keys go
// in tiles of kAttnKeyBlock at absolute positions (0, 64, 128, ...); per tile the K rows are
// gathered block by block through the table and transposed (so the scores q . k vectorise over
// keys; a full block of 16 rows through registers, gather_keys_t), then per query row an online
// softmax (running max m and sum l, earlier sums rescaled by exp(m_old - m_new)) and the
// weighted V rows added. The table is read once per block of a tile, never per key. Values: for
// a tile of several tokens (prefill) the V rows are copied next to each other and added by
// attend_block_row (a plain strided loop; GCC vectorises a loop over per-key row pointers across
// keys, with gathers, 2-3x slower); for a tile of one token (decode: the copy would be used by
// one GQA group only) they are added straight from the cache, block by block: with AVX-512 at
// head dim 64 and 128 by attend_rows_paged, up to 4 (2) rows of the group at once, else by
// attend_block_row_paged one row at a time (add_values). All add a row's keys in ascending
// order: same bits.
//
// Batch invariant: a row's arithmetic depends only on its own q, its own key range and the
// tiles' fixed boundaries (keys of a tile outside its range weigh +0 in the fixed-shape sum and
// are skipped in the values), so a token gets the same bits alone, in a prefill chunk or in a
// batch, whatever the tile, the thread count or where its blocks sit in the pool.
void attention(float* out, const float* q, const float* k_cache, const float* v_cache,
               const int32_t* rows, const int32_t* pos, const int32_t* block_tables,
               int table_stride, int T, int n_heads, int n_kv_heads, int hd, int block_size,
               int window, float scale) {
  const int group = n_heads / n_kv_heads;
  const int kv_dim = n_kv_heads * hd;
  const int64_t block_elems = static_cast<int64_t>(block_size) * kv_dim;
  const int tile_tokens = std::max(1, kAttnMaxRows / group);
  // Tiles: runs of up to tile_tokens consecutive tokens with the same row.
  thread_local std::vector<int> tiles;
  tiles.clear();
  int64_t work = 0;
  for (int t = 0; t < T;) {
    tiles.push_back(t);
    int e = t + 1;
    while (e < T && e - t < tile_tokens && rows[e] == rows[t]) ++e;
    t = e;
  }
  for (int t = 0; t < T; ++t) work += int64_t{pos[t] + 1} * n_heads * hd;
  tiles.push_back(T);
  const int* tile_at = tiles.data();  // the calling thread's list, read by every thread
  const int n_tiles = static_cast<int>(tiles.size()) - 1;
  const int items = n_tiles * n_kv_heads;
  const int max_rows = std::min(T, tile_tokens) * group;
#pragma omp parallel if (items > 1 && work > 32768)
  {
    thread_local AttnScratch scratch;
    scratch.fit(max_rows, hd);
    float* kt = scratch.kt.data();
    float* vt = scratch.vt.data();
    const float* vblk[kAttnKeyBlock];
    int jblk[kAttnKeyBlock + 1];
#pragma omp for schedule(dynamic, 1)
    for (int it = 0; it < items; ++it) {
      const int t0 = tile_at[it / n_kv_heads], t1 = tile_at[it / n_kv_heads + 1];
      const int kvh = it % n_kv_heads;
      const int n_rows = (t1 - t0) * group;
      // Copy V only where several tokens share the tile (prefill): there the copy pays for
      // itself; for one token (decode) the group's rows read V straight from the cache.
      const bool copy_v = t1 - t0 > 1;
      const int32_t* table = block_tables + static_cast<int64_t>(rows[t0]) * table_stride;
      auto lo_of = [&](int t) { return window > 0 ? std::max(0, pos[t] - window + 1) : 0; };
      int lo = lo_of(t0), hi = pos[t0];
      for (int t = t0 + 1; t < t1; ++t) lo = std::min(lo, lo_of(t)), hi = std::max(hi, pos[t]);
      float* m = scratch.m.data();
      float* l = scratch.l.data();
      std::fill(m, m + n_rows, -INFINITY);
      std::fill(l, l + n_rows, 0.0f);
      std::fill(scratch.acc.begin(), scratch.acc.begin() + int64_t{n_rows} * hd, 0.0f);
      for (int b0 = lo / kAttnKeyBlock * kAttnKeyBlock; b0 <= hi; b0 += kAttnKeyBlock) {
        const int b1 = std::min(b0 + kAttnKeyBlock, hi + 1);
        const int nb = b1 - b0;
        // [b0, b1) gathered a block at a time (one table lookup each): K rows transposed into
        // kt; V rows copied into vt (copy_v), else each block's first V row noted in vblk, its
        // first tile key in jblk. Blocks wholly before lo hold no key of the tile's tokens (they
        // may be out of the window, -1): zero keys, and values never read.
        int nblk = 0;
        for (int p = b0; p < b1;) {
          const int off = p % block_size;
          const int len = std::min(block_size - off, b1 - p);
          const int j0 = p - b0;
          if (p + len <= lo) {
            for (int j = j0; j < j0 + len; ++j)
              for (int d = 0; d < hd; ++d) kt[d * kAttnKeyBlock + j] = 0.0f;
          } else {
            const int64_t at =
                table[p / block_size] * block_elems + int64_t{off} * kv_dim + kvh * hd;
            gather_keys_t(kt + j0, k_cache + at, kv_dim, len, hd);
            if (copy_v) {
              const float* vr = v_cache + at;
              for (int j = j0; j < j0 + len; ++j, vr += kv_dim)
                std::memcpy(vt + int64_t{j} * hd, vr, sizeof(float) * hd);
            } else {
              vblk[nblk] = v_cache + at;
              jblk[nblk++] = j0;
            }
          }
          p += len;
        }
        jblk[nblk] = nb;
        for (int j = nb; j < kAttnKeyBlock; ++j)
          for (int d = 0; d < hd; ++d) kt[d * kAttnKeyBlock + j] = 0.0f;
        for (int t = t0; t < t1; ++t) {
          const int jlo = std::max(b0, lo_of(t)) - b0, jhi = std::min(b1 - 1, pos[t]) - b0;
          if (jlo > jhi) continue;  // no key of this tile in the token's range
#if defined(__AVX512F__)            // (without 32 vector registers the rows' sums would spill)
          if (!copy_v && (hd == 64 || hd == 128)) {  // decode: the group's rows together
            const int r = (t - t0) * group;
            const float* qg = q + (static_cast<int64_t>(t) * n_heads + kvh * group) * hd;
            float* a = scratch.acc.data() + int64_t{r} * hd;
            if (hd == 64) {
              attend_group_paged<64>(group, qg, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale,
                                     m + r, l + r, a);
            } else {
              attend_group_paged<128>(group, qg, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale,
                                      m + r, l + r, a);
            }
            continue;
          }
#endif
          for (int g = 0; g < group; ++g) {
            const int r = (t - t0) * group + g;
            const float* qr = q + (static_cast<int64_t>(t) * n_heads + kvh * group + g) * hd;
            float* a = scratch.acc.data() + int64_t{r} * hd;
            if (!copy_v) {  // decode one row at a time (no AVX-512, or another head dim)
              switch (hd) {
                case 64:
                  attend_block_row_paged<64>(qr, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, hd,
                                             m + r, l + r, a);
                  break;
                case 128:
                  attend_block_row_paged<128>(qr, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, hd,
                                              m + r, l + r, a);
                  break;
                default:
                  attend_block_row_paged<0>(qr, kt, vblk, jblk, nblk, kv_dim, jlo, jhi, scale, hd,
                                            m + r, l + r, a);
              }
              continue;
            }
            switch (hd) {
              case 64:
                attend_block_row<64>(qr, kt, vt, jlo, jhi, scale, hd, m + r, l + r, a);
                break;
              case 128:
                attend_block_row<128>(qr, kt, vt, jlo, jhi, scale, hd, m + r, l + r, a);
                break;
              default:
                attend_block_row<0>(qr, kt, vt, jlo, jhi, scale, hd, m + r, l + r, a);
            }
          }
        }
      }
      for (int t = t0; t < t1; ++t)
        for (int g = 0; g < group; ++g) {
          const int r = (t - t0) * group + g;
          const float inv = l[r] > 0.f ? 1.0f / l[r] : 0.f;
          const float* a = scratch.acc.data() + int64_t{r} * hd;
          float* o = out + (static_cast<int64_t>(t) * n_heads + kvh * group + g) * hd;
          for (int d = 0; d < hd; ++d) o[d] = a[d] * inv;
        }
    }
  }
}

void silu_mul(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd if (n > 65536)  // decode (one token) is not worth a fork/join
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void silu_mul_fused(float* out, const float* gate_up, int64_t rows, int64_t I) {
  if (rows == 1) {
    silu_mul(out, gate_up, gate_up + I, I);
    return;
  }
#pragma omp parallel for if (rows * I > 65536)
  for (int64_t t = 0; t < rows; ++t) {
    const float* g = gate_up + t * 2 * I;
    const float* u = g + I;
    float* o = out + t * I;
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

}  // namespace tpinfer::cpu
